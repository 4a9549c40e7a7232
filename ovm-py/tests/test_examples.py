"""Each Python example runs against the sim driver and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "bindings-examples" / "python"


def run_both(script: str, *args: str) -> tuple[str, str]:
    """Run an example that must succeed; returns its stdout and stderr."""
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script), *args],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def run(script: str, *args: str) -> str:
    """Run an example that must succeed quietly; returns its stdout."""
    out, err = run_both(script, *args)
    assert err == ""
    return out


def test_inventory_report() -> None:
    out = run("inventory.py", "--vms", "4")
    assert "Pool pool1: 2 servers" in out
    assert out.count(" Running    on xen") == 2
    assert "Totals: Running 2, Stopped 2" in out


def test_bulk_clone_and_start() -> None:
    out = run("bulk_clone_start.py", "--count", "6")
    lines = out.replace("\r", "\n").splitlines()
    assert any(line.startswith("clone  [") and "6/6 jobs 100.0%" in line for line in lines)
    assert any(line.startswith("start  [") and "6/6 jobs 100.0%" in line for line in lines)
    assert lines[-1].startswith("6 of 6 VMs running: ")


def test_event_watcher() -> None:
    out = run("event_watcher.py", "--count", "200")
    assert "Added    Vm         watched" in out
    assert "Added    Event      Warning demo.notice" in out
    assert "acknowledged 1 warning(s)" in out


def test_async_start() -> None:
    out = run("async_start.py", "--count", "8")
    assert "started 8/8 VMs concurrently" in out
    assert "running now: 8" in out
    assert "'Modified': " in out


def test_import_assembly_with_a_progress_bar() -> None:
    out, err = run_both("import_assembly.py")
    # The bar is redrawn in place on stderr (text mode reads each "\r" as a line end).
    bars = [line for line in err.splitlines() if line]
    assert bars and all(line.startswith("import [") for line in bars), err
    assert bars[-1].endswith("bytes 100.0%") and "[" + "#" * 30 + "]" in bars[-1], err
    assert "assembly shop: 2 VMs, 2 disks" in out
    assert "template web      1 vCPU 256 MiB 1 disk(s) 1 NIC(s)" in out
    assert "template db       1 vCPU 256 MiB 1 disk(s) 1 NIC(s)" in out


def test_vlan_over_bond() -> None:
    out = run("vlan_over_bond.py")
    lines = out.splitlines()
    for name in ("xen1", "xen2"):
        assert f"{name}: bonds bond0 (eth1+eth2); " in out
        assert any(line.startswith(f"{name}: ") and "vmnet300 [bond0.300]" in line and line.endswith("no drift")
                   for line in lines), out
    assert sum(1 for line in lines if line.startswith("web: ") and " on vmnet300" in line) == 2, out
