"""asyncio: start many VMs concurrently (await each job) while an async iterator counts feed changes."""

from __future__ import annotations

import argparse
import asyncio
import time

import ovm
import simlab


async def count_vm_changes(sub: ovm.Subscription, counts: dict[str, int]) -> None:
    async for change in sub:
        if change.object.kind == "Vm":
            counts[change.op] = counts.get(change.op, 0) + 1


async def start_all(mgr: ovm.Manager, vms: list[str]) -> list[ovm.JobInfo]:
    return await asyncio.gather(*(mgr.start_vm(v) for v in vms))


async def main(count: int) -> None:
    with ovm.Manager(recurring_jobs=False) as mgr:
        pool, _, template = simlab.build(mgr, servers=4)
        vms = [simlab.result_id(mgr.clone_template(template, f"app{i:03}", pool=pool)) for i in range(count)]
        counts: dict[str, int] = {}
        watcher = asyncio.create_task(count_vm_changes(mgr.subscribe(), counts))
        t0 = time.perf_counter()
        infos = await start_all(mgr, vms)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.3)
        watcher.cancel()
        try:
            await watcher
        except asyncio.CancelledError:
            pass
        ok = sum(1 for i in infos if i.state == "Completed")
        print(f"started {ok}/{count} VMs concurrently in {elapsed:.2f}s")
        print(f"VM changes seen by the async watcher: {counts}")
        print(f"running now: {len(mgr.vms(power_state='Running'))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20)
    asyncio.run(main(parser.parse_args().count))
