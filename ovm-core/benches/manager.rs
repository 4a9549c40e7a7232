//! Manager benchmarks: durable job completions per second on an on-disk database, lookup by id,
//! listing 100,000 VMs, and memory per VM object (printed before the criterion runs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use ovm_core::model::*;
use ovm_core::store::Durability;
use ovm_core::Manager;

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with layout l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with layout l.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N_VMS: usize = 100_000;

fn sample_vm(i: usize) -> Vm {
    Vm {
        id: VmId::new(),
        name: format!("vm-{i:06}"),
        description: String::new(),
        config: VmConfig {
            vnics: vec![Vnic { mac: format_mac(0x00_16_3e_00_00_00 + i as u64), network: None }],
            os_type: "Oracle Linux 6".into(),
            ..VmConfig::default()
        },
        repository: None,
        pool: None,
        server: None,
        power_state: PowerState::Stopped,
        domid: None,
        anti_affinity_group: None,
    }
}

fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ovm-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("manager.db")
}

fn memory_per_vm() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut inv = Inventory::new();
    for i in 0..N_VMS {
        inv.load(Object::Vm(sample_vm(i)));
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "memory per VM object (inventory with {N_VMS} VMs, indexes included): {} bytes (target < 2048)",
        (after - before) / N_VMS as isize
    );
    drop(inv);
}

fn populated(path: Option<&std::path::Path>) -> (Manager, Vec<VmId>) {
    let mut b = Manager::builder().recurring_jobs(false);
    if let Some(p) = path {
        b = b.database(ovm_core::manager::DatabaseLocation::File(p.to_path_buf()));
    }
    let mgr = b.open().expect("open");
    let vms: Vec<Vm> = (0..N_VMS).map(sample_vm).collect();
    let ids = vms.iter().map(|v| v.id).collect();
    let t = Instant::now();
    mgr.create_objects(vms.into_iter().map(Object::Vm).collect())
        .expect("import")
        .wait(Some(Duration::from_secs(600)))
        .expect("import done");
    println!("import of {N_VMS} VMs in one job: {:?}", t.elapsed());
    (mgr, ids)
}

fn jobs(c: &mut Criterion) {
    for (label, durability) in [("normal", Durability::Normal), ("full", Durability::Full)] {
        let path = temp_db(label);
        let mgr = Manager::builder()
            .database(ovm_core::manager::DatabaseLocation::File(path.clone()))
            .durability(durability)
            .recurring_jobs(false)
            .open()
            .expect("open");
        let mut g = c.benchmark_group(format!("durable_jobs_{label}"));
        const BATCH: u64 = 500;
        g.throughput(Throughput::Elements(BATCH));
        g.sample_size(10);
        let mut n = 0u64;
        g.bench_function("create_tag_job_submit_and_complete", |b| {
            b.iter(|| {
                let handles: Vec<_> = (0..BATCH)
                    .map(|_| {
                        n += 1;
                        mgr.create_object(Object::Tag(Tag::new(format!("t{n}")))).expect("submit")
                    })
                    .collect();
                for h in handles {
                    h.wait(Some(Duration::from_secs(60))).expect("job");
                }
            })
        });
        g.finish();
        drop(mgr);
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}

fn inventory(c: &mut Criterion) {
    let (mgr, ids) = populated(None);
    let mut g = c.benchmark_group("inventory_100k_vms");
    let mut i = 0usize;
    g.bench_function("lookup_vm_by_id", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            mgr.vm(ids[i]).expect("vm")
        })
    });
    g.bench_function("lookup_vm_by_name", |b| b.iter(|| mgr.vm_by_name("vm-054321").expect("vm")));
    g.sample_size(20);
    g.bench_function("list_all_vms", |b| b.iter_batched(|| (), |_| mgr.vms(), BatchSize::SmallInput));
    g.finish();
}

criterion_group!(benches, jobs, inventory);

fn main() {
    memory_per_vm();
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
