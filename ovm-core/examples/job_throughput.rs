//! Durable job completions per second on an on-disk manager database.
//!
//! `cargo run --release -p ovm-core --example job_throughput -- [JOBS] [normal|full]`
//! Submits JOBS one-step jobs (creating a tag each) at once and waits for all of them.

use std::time::{Duration, Instant};

use ovm_core::manager::DatabaseLocation;
use ovm_core::model::{Object, Tag};
use ovm_core::store::Durability;
use ovm_core::Manager;

fn main() -> ovm_core::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let durability = match std::env::args().nth(2).as_deref() {
        Some("full") => Durability::Full,
        _ => Durability::Normal,
    };
    let dir = std::env::temp_dir().join(format!("ovm-job-throughput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ovm_core::Error::invalid("dir", e.to_string()))?;
    let mgr = Manager::builder()
        .database(DatabaseLocation::File(dir.join("manager.db")))
        .durability(durability)
        .recurring_jobs(false)
        .open()?;
    let t = Instant::now();
    let jobs: Vec<_> = (0..n)
        .map(|i| mgr.create_object(Object::Tag(Tag::new(format!("tag-{i}")))))
        .collect::<Result<_, _>>()?;
    for j in &jobs {
        j.wait(Some(Duration::from_secs(120)))?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{n} durable job completions ({durability:?}) in {secs:.3} s: {:.0} jobs/s", n as f64 / secs);
    drop(mgr);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
