"""``ovm.Manager.connect``: the same scenario through a manager service (``ovm serve``) and in
process gives the same results.

The ``ovm`` binary is the one ``make py-test`` builds (``OVM_BIN``), or ``ovm`` on ``PATH``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ovm

WAIT = 30.0


def ovm_binary() -> str:
    path = os.environ.get("OVM_BIN") or shutil.which("ovm")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("no ovm binary: build it (cargo build -p ovm-core --bin ovm) and set OVM_BIN")
    return path


@pytest.fixture
def service() -> Iterator[str]:
    """``ovm serve`` on a fresh database in a temporary directory; yields its URI."""
    # A short directory: a Unix socket's path is limited to about 100 bytes.
    d = Path(tempfile.mkdtemp(prefix="ovm-py-"))
    sock, log = d / "m.sock", d / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [ovm_binary(), "--db", str(d / "manager.db"), "serve", "--socket", str(sock),
             "--shutdown-timeout", "10"],
            stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ovm serve did not start: {log.read_text()}")
            time.sleep(0.05)
        yield f"ovm+unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def run(job: ovm.Job) -> str:
    result = job.wait(WAIT).result
    assert result is not None
    return result.id


async def awaited(job: ovm.Job) -> ovm.JobInfo:
    return await job


def scenario(m: ovm.Manager) -> dict[str, Any]:
    """A server, a pool, a VM started and stopped, an error, and the change feed; the results with
    ids replaced by names."""
    sub = m.subscribe()
    server = run(m.discover_server("sim://a?cpus=8&memory_mib=16384", "ovm-sim"))
    pool = run(m.create_pool("pool1"))
    m.add_server_to_pool(pool, server).wait(WAIT)
    vm = run(m.create_vm("web", ovm.VmConfig(memory_mib=1024, vcpus=2), pool=pool))

    start = m.start_vm(vm)
    started = start.wait(WAIT)
    assert start.done and start.state == "Completed" and start.progress == 1.0
    assert m.job(start.id).info().state == "Completed"
    running = m.vm(vm)
    stopped_info = asyncio.run(awaited(m.stop_vm(vm, timeout=10.0, force=True)))
    stopped = m.vm_by_name("web")

    with pytest.raises(ovm.NotFoundError):
        m.start_vm(str(uuid.uuid4())).wait(WAIT)
    with pytest.raises(ovm.OvmError) as duplicate:
        m.create_pool("pool1").wait(WAIT)

    changes: list[tuple[str, str]] = []
    while (c := sub.next(timeout=2.0)) is not None:
        changes.append((c.object.kind, c.op))
        assert sub.token == c.token
    s = m.server(server)
    return {
        "server": (s.name, s.cpus, s.memory_mib, s.pool == pool),
        "pools": [(p.name, [m.server(x).name for x in p.servers]) for p in m.pools()],
        "start": (started.kind, started.state),
        "running": (running.power_state, running.server == server),
        "stop": (stopped_info.kind, stopped_info.state),
        "stopped": (stopped.power_state, stopped.server is None),
        "duplicate_pool": type(duplicate.value).__name__,
        "vm_changes": sorted({op for kind, op in changes if kind == "Vm"}),
        # A service also runs its recurring jobs: only the kinds the scenario changes are compared.
        "changed_kinds": sorted({kind for kind, _ in changes} & {"Server", "ServerPool", "Vm"}),
    }


def test_a_service_answers_as_the_manager_in_process(service: str) -> None:
    local = ovm.Manager(recurring_jobs=False)
    try:
        expected = scenario(local)
    finally:
        local.close()
    with ovm.Manager.connect(service) as remote:
        assert remote.id and not remote.closed
        got = scenario(remote)
    assert got == expected
    assert got["running"] == ("Running", True) and got["stopped"][0] == "Stopped"
    assert got["changed_kinds"] == ["Server", "ServerPool", "Vm"] and got["vm_changes"]
    assert got["start"][1] == "Completed" and got["stop"][1] == "Completed"


def test_a_connected_manager_refuses_what_needs_this_process(service: str) -> None:
    m = ovm.Manager.connect(service)
    with pytest.raises(ovm.UnsupportedError, match="in this process"):
        m.sim_add_nfs_export("nfs.example.com", "/export/fs1", 1 << 40)
    with pytest.raises(ovm.UnsupportedError, match="register_power_plugin"):
        m.register_power_plugin("bmc", "/bin/true")
    with pytest.raises(ovm.UnsupportedError):
        ovm.Manager(sim_world_of=m)
    # Closing the connection leaves the service running.
    token = m.current_token()
    m.close()
    assert m.closed
    with pytest.raises(ovm.ClosedError):
        m.pools()
    with ovm.Manager.connect(service) as again:
        assert again.current_token() >= token


def test_a_wrong_uri_raises_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.Manager.connect("ovm+unix://relative/m.sock")
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.Manager.connect("http://example.com/")
    # A TLS address needs its port (and, to connect, the service's pinned certificate).
    with pytest.raises(ovm.InvalidArgumentError):
        ovm.Manager.connect("ovm+tls://example.com")
    with pytest.raises(ovm.BackendError):
        ovm.Manager.connect(f"ovm+unix://{tmp_path / 'nobody.sock'}")
