"""Inventory report: every server, pool, repository, network and VM of a (simulated) manager."""

from __future__ import annotations

import argparse

import ovm
import simlab


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def report(mgr: ovm.Manager) -> str:
    lines: list[str] = []
    lines.append(f"Manager {mgr.id}")
    for pool in mgr.pools():
        lines.append(f"Pool {pool.name}: {len(pool.servers)} servers, master {mgr.server(pool.master).name if pool.master else '-'}")
    lines.append("Servers:")
    for s in mgr.servers():
        vms = mgr.vms(server=s.id)
        running = sum(1 for v in vms if v.power_state == "Running")
        lines.append(f"  {s.name:<8} {s.power_state:<10} {s.cpus:>3} CPUs {s.memory_mib:>7} MiB  "
                     f"Xen {s.xen_version}  {running} running VMs")
    lines.append("Repositories:")
    for r in mgr.repositories():
        lines.append(f"  {r.name:<8} used {gib(r.used_bytes)} of {gib(r.capacity_bytes)}, "
                     f"presented to {len(r.presented_to)} servers")
    lines.append("Networks:")
    for n in mgr.networks():
        lines.append(f"  {n.name:<8} bridge {n.bridge} functions {', '.join(n.functions)}")
    lines.append("VMs:")
    for v in mgr.vms():
        where = mgr.server(v.server).name if v.server else "-"
        lines.append(f"  {v.name:<8} {v.power_state:<10} on {where:<6} {v.vcpus} vCPU {v.memory_mib} MiB  "
                     f"MACs {', '.join(v.macs)}")
    by_state: dict[str, int] = {}
    for v in mgr.vms():
        by_state[v.power_state] = by_state.get(v.power_state, 0) + 1
    lines.append("Totals: " + ", ".join(f"{k} {c}" for k, c in sorted(by_state.items())))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=4, help="VMs to create (half of them started)")
    args = parser.parse_args()
    with ovm.Manager(recurring_jobs=False) as mgr:
        pool, _, template = simlab.build(mgr)
        for i in range(args.vms):
            vm = simlab.result_id(mgr.clone_template(template, f"vm{i:02}", pool=pool))
            if i % 2 == 0:
                mgr.start_vm(vm).wait(simlab.WAIT)
        print(report(mgr))


if __name__ == "__main__":
    main()
