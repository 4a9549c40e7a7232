"""A manager database has one manager; references to missing objects are NotFoundError."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import ovm
from conftest import Lab

HOLDER = """
import sys, time, ovm
mgr = ovm.Manager(sys.argv[1], recurring_jobs=False)
print("READY", flush=True)
time.sleep(120)
"""


def test_a_database_held_by_another_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    path = str(tmp_path / "manager.db")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "READY"
        with pytest.raises(ovm.DatabaseLockedError) as ei:
            ovm.Manager(path, recurring_jobs=False)
        assert ei.value.pid == holder.pid
        assert ei.value.path == path
        assert ei.value.kind == "DatabaseLocked" and ei.value.code == 19
        assert f"process {holder.pid}" in str(ei.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    # The kernel dropped the killed holder's lock: the database opens.
    with ovm.Manager(path, recurring_jobs=False) as mgr:
        assert mgr.pools() == []


def test_one_manager_per_database_in_one_process_and_close_gives_it_up(tmp_path: Path) -> None:
    path = tmp_path / "manager.db"
    first = ovm.Manager(path, recurring_jobs=False)
    with pytest.raises(ovm.DatabaseLockedError) as ei:
        ovm.Manager(path, recurring_jobs=False)
    assert ei.value.pid == os.getpid()
    first.close()
    second = ovm.Manager(path, recurring_jobs=False)
    second.close()


def test_a_reference_to_a_missing_object_is_not_found(lab: Lab) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(ovm.NotFoundError) as ei:
        lab.mgr.create_vm("orphan", ovm.VmConfig(), pool=missing)
    assert ei.value.object_kind == "ServerPool" and ei.value.id == missing
    assert all(v.name != "orphan" for v in lab.mgr.vms())
