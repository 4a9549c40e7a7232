"""Event watcher: follow the change feed (blocking iterator) while operations run, then resume from a token."""

from __future__ import annotations

import argparse
import threading

import ovm
import simlab


def describe(mgr: ovm.Manager, change: ovm.Change) -> str:
    obj = change.object
    name = ""
    if change.op != "Removed":
        if obj.kind == "Vm":
            name = mgr.vm(obj.id).name
        elif obj.kind == "Job":
            name = mgr.job(obj.id).info().summary
        elif obj.kind == "Event":
            e = mgr.event(obj.id)
            name = f"{e.severity} {e.event_type}: {e.summary}"
    return f"#{change.token:<5} {change.op:<8} {obj.kind:<10} {name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=25, help="changes to show before stopping")
    args = parser.parse_args()
    with ovm.Manager(recurring_jobs=False) as mgr:
        pool, _, template = simlab.build(mgr)
        start = mgr.current_token()
        sub = mgr.subscribe()

        def work() -> None:
            vm = simlab.result_id(mgr.clone_template(template, "watched", pool=pool))
            mgr.start_vm(vm).wait(simlab.WAIT)
            mgr.raise_event(ovm.ObjectRef("Vm", vm), "Warning", "demo.notice", "a notice from the example")
            mgr.stop_vm(vm).wait(simlab.WAIT)

        worker = threading.Thread(target=work)
        worker.start()
        shown = 0
        while shown < args.count:
            change = sub.next(timeout=5.0)
            if change is None:
                break
            print(describe(mgr, change))
            shown += 1
        worker.join()
        changes, resume = mgr.events_since(start)
        print(f"{shown} changes watched; {len(changes)} since token {start}; resume from {resume}")
        warnings = mgr.events(min_severity="Warning", acknowledged=False)
        for e in warnings:
            mgr.acknowledge_event(e.id).wait(simlab.WAIT)
        print(f"acknowledged {len(warnings)} warning(s)")


if __name__ == "__main__":
    main()
