"""Benchmarks of the Python API; every ratio compares figures measured in this same run.

1. Getter overhead: reading a record's attribute (``vm.memory_mib``, ``vm.name``) against calling
   ``ovm._ovm._noop()``, a native function that does nothing (target: at most 2x).
2. Listing 100,000 VMs into Python record objects (``mgr.vms()``), after importing them with one
   bulk ``create_objects`` job; compared with building 100,000 small pure-Python objects.
"""

from __future__ import annotations

import argparse
import copy
import time
import timeit
import uuid
from types import SimpleNamespace
from typing import Callable

import ovm
from ovm import _ovm


def interleaved_ns(stmts: dict[str, str], env: dict[str, object], number: int, rounds: int = 9) -> dict[str, float]:
    """Best time of each statement in nanoseconds, measured in alternating rounds so that load on
    the machine affects every statement alike."""
    best = {k: float("inf") for k in stmts}
    timers = {k: timeit.Timer(v, globals=env) for k, v in stmts.items()}
    for _ in range(rounds):
        for k, t in timers.items():
            best[k] = min(best[k], t.timeit(number) / number * 1e9)
    return best


def best_s(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    args = parser.parse_args()

    with ovm.Manager(recurring_jobs=False) as mgr:
        first = mgr.create_vm("bench-000000", ovm.VmConfig(memory_mib=1024)).wait(60).result
        assert first is not None
        vm = mgr.vm(first.id)

        stmts = {"_noop()": "noop()", "vm.memory_mib": "vm.memory_mib", "vm.name": "vm.name",
                 "vm.server (None)": "vm.server"}
        t = interleaved_ns(stmts, {"noop": _ovm._noop, "vm": vm}, args.calls)
        print("Getter overhead (best of 9 interleaved rounds, ns per operation):")
        for k, v in t.items():
            print(f"  {k:<18} {v:8.1f} ns   {v / t['_noop()']:.2f}x")

        template = vm.to_dict()
        objects = []
        for i in range(1, args.vms):
            o = copy.copy(template)
            o["id"] = str(uuid.uuid4())
            o["name"] = f"bench-{i:06}"
            objects.append({"kind": "Vm", "object": o})
        t0 = time.perf_counter()
        mgr.create_objects(objects).wait(600)
        t_import = time.perf_counter() - t0
        total = len(mgr.vms())
        assert total == args.vms, total
        print(f"\nBulk import: {args.vms - 1} VMs in one create_objects job: {t_import:.2f} s "
              f"({(args.vms - 1) / t_import:,.0f} VMs/s)")

        t_list = best_s(lambda: mgr.vms())
        t_names = best_s(lambda: [v.name for v in mgr.vms()])
        plain = [(str(uuid.uuid4()), f"bench-{i:06}") for i in range(args.vms)]
        t_py = best_s(lambda: [SimpleNamespace(id=a, name=b, power_state="Stopped", memory_mib=1024)
                               for a, b in plain])
        print(f"\nList {total:,} VMs into Python objects (best of 3):")
        print(f"  mgr.vms()                          {t_list * 1e3:8.1f} ms  {t_list / total * 1e9:6.0f} ns/VM")
        print(f"  [v.name for v in mgr.vms()]        {t_names * 1e3:8.1f} ms  {t_names / total * 1e9:6.0f} ns/VM")
        print(f"  baseline: {total:,} SimpleNamespace   {t_py * 1e3:8.1f} ms  {t_py / total * 1e9:6.0f} ns/object")
        print(f"  ratio mgr.vms() / baseline          {t_list / t_py:.2f}x")


if __name__ == "__main__":
    main()
