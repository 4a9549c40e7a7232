"""Bulk clone-and-start: clone a template N times, start every clone, with a plain-text progress bar."""

from __future__ import annotations

import argparse
import sys
import time

import ovm
import simlab


def bar(label: str, done: int, total: int, fraction: float, width: int = 30) -> str:
    filled = int(fraction * width)
    return f"{label:<6} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} jobs {fraction:6.1%}"


def show(label: str, jobs: list[ovm.Job], total: int) -> None:
    done = sum(1 for j in jobs if j.done)
    fraction = (done + sum(j.progress for j in jobs if not j.done)) / max(total, 1)
    sys.stdout.write("\r" + bar(label, done, total, fraction))
    sys.stdout.flush()


def clone_all(mgr: ovm.Manager, template: str, pool: str, count: int) -> list[str]:
    """Clone one at a time (a clone locks its template), showing progress."""
    finished: list[ovm.Job] = []
    for i in range(count):
        job = mgr.clone_template(template, f"web{i:03}", pool=pool)
        while not job.done:
            show("clone", finished + [job], count)
            time.sleep(0.02)
        job.wait()
        finished.append(job)
    show("clone", finished, count)
    print()
    return [r.id for r in (j.info().result for j in finished) if r is not None]


def start_all(mgr: ovm.Manager, vms: list[str]) -> list[ovm.JobInfo]:
    """Start every VM at once (different VMs do not lock each other), showing progress."""
    jobs = [mgr.start_vm(v) for v in vms]
    while not all(j.done for j in jobs):
        show("start", jobs, len(jobs))
        time.sleep(0.02)
    show("start", jobs, len(jobs))
    print()
    return [j.wait() for j in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=12)
    args = parser.parse_args()
    with ovm.Manager(recurring_jobs=False) as mgr:
        pool, _, template = simlab.build(mgr, servers=3)
        vm_ids = clone_all(mgr, template, pool, args.count)
        start_all(mgr, vm_ids)
        running = mgr.vms(power_state="Running")
        per_server: dict[str, int] = {}
        for v in running:
            name = mgr.server(v.server).name if v.server else "-"
            per_server[name] = per_server.get(name, 0) + 1
        print(f"{len(running)} of {args.count} VMs running: "
              + ", ".join(f"{k}={c}" for k, c in sorted(per_server.items())))


if __name__ == "__main__":
    main()
