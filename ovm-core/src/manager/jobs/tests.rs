//! The job engine on its own: jobs of hand-made steps, run on a [`MemoryStore`] (no database) and on
//! the SQLite store, checking what the engine commits, undoes and recovers, step by step.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::{JobSpec, StepCtx};
use crate::driver::sim::{SimDriver, SimWorld, DEFAULT_PASSWORD};
use crate::job::{StorageUndo, Undo};
use crate::manager::{file_storage, Manager, ManagerBuilder};
use crate::model::*;
use crate::store::{JobFilter, MemoryStore, SqliteStore, Store};
use crate::{Error, ErrorKind, Result};

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

/// Where a test manager keeps its data.
enum Backend {
    Memory(MemoryStore),
    Sqlite(PathBuf),
}

impl Backend {
    /// Every backend, each empty.
    fn all(test: &str) -> Vec<Backend> {
        vec![Backend::Memory(MemoryStore::new()), Backend::Sqlite(temp_db(test))]
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// A manager on this backend reaching the simulated servers of `world`.
    fn open(&self, world: &SimWorld) -> Manager {
        let b = ManagerBuilder::new().driver(Arc::new(SimDriver::new(world.clone()))).recurring_jobs(false);
        match self {
            Backend::Memory(m) => b.store(m.clone()),
            Backend::Sqlite(p) => b.store(SqliteStore::open(p, Default::default()).unwrap()),
        }
        .open()
        .unwrap()
    }

    /// What a crash of the manager at this moment leaves for the next one.
    fn crash_copy(&self, test: &str) -> Backend {
        match self {
            Backend::Memory(m) => Backend::Memory(m.snapshot()),
            Backend::Sqlite(p) => {
                let to = temp_db(test);
                for ext in ["", "-wal"] {
                    let from = PathBuf::from(format!("{}{ext}", p.display()));
                    if from.exists() {
                        std::fs::copy(&from, format!("{}{ext}", to.display())).unwrap();
                    }
                }
                Backend::Sqlite(to)
            }
        }
    }
}

fn temp_db(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ovm-engine-{test}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ovm.db")
}

fn server(mgr: &Manager, name: &str) -> ServerId {
    let job = mgr.discover_server(&format!("sim://{name}?cpus=4&memory_mib=8192"), DEFAULT_PASSWORD).unwrap();
    ServerId(job.wait(WAIT).unwrap().result.unwrap().id)
}

fn tag(name: &str) -> Tag {
    Tag::new(name)
}

fn tag_ref(t: &Tag) -> ObjectRef {
    ObjectRef::new(ObjectKind::Tag, t.id)
}

/// A step that puts `t` in the inventory.
fn put(t: &Tag) -> impl FnOnce(&StepCtx<'_>) -> Result<()> + Send + 'static {
    let t = t.clone();
    move |ctx| ctx.tx(|tx| tx.put(t.into_object()))
}

/// A step that creates `path` on `server`, journaling its deletion first.
fn create_file(server: ServerId, path: &str) -> impl FnOnce(&StepCtx<'_>) -> Result<()> + Send + 'static {
    let path = path.to_owned();
    move |ctx| {
        ctx.will_do(Undo::Storage(StorageUndo::DeleteFile { server: server.0, path: path.clone() }))?;
        file_storage(&*ctx.hv(server)?)?.create_file(&path, 4096)
    }
}

fn stored_objects(mgr: &Manager) -> Vec<ObjectRef> {
    let mut v: Vec<ObjectRef> = mgr.db().load_objects().unwrap().iter().map(Object::object_ref).collect();
    v.sort_by_key(|r| r.id);
    v
}

fn stored_job(mgr: &Manager, id: JobId) -> Job {
    mgr.db().job(id).unwrap().expect("the job is stored")
}

#[test]
fn steps_run_in_order_and_the_outcome_is_committed() {
    for backend in Backend::all("order") {
        let mgr = backend.open(&SimWorld::new());
        let (a, b) = (tag("a"), tag("b"));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o1, o2) = (order.clone(), order.clone());
        let spec = JobSpec::new("test.order", "two steps", vec![tag_ref(&a)])
            .step("first", move |ctx| {
                o1.lock().unwrap().push("first");
                put(&a)(ctx)
            })
            .step("second", move |ctx| {
                o2.lock().unwrap().push("second");
                put(&b)(ctx)
            });
        let job = mgr.submit(spec).unwrap().wait(WAIT).unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "second"], "{}", backend.name());
        assert_eq!(job.steps_done, ["first", "second"]);
        assert_eq!(job.progress, 1.0);
        let stored = stored_job(&mgr, job.id);
        assert_eq!(stored.state, JobState::Completed, "{}: the outcome is committed", backend.name());
        assert_eq!(stored.steps_done, ["first", "second"]);
        assert_eq!(stored_objects(&mgr).iter().filter(|r| r.kind == ObjectKind::Tag).count(), 2);
        assert!(mgr.ensure_unlocked(job.targets[0]).is_ok(), "the lock is released");
    }
}

#[test]
fn a_failing_step_undoes_every_step_newest_first_on_the_server_and_in_the_store() {
    for backend in Backend::all("failing") {
        let world = SimWorld::new();
        let mgr = backend.open(&world);
        let host = server(&mgr, "host1");
        let a = tag("a");
        let target = tag_ref(&a);
        let before = stored_objects(&mgr);
        let a_again = a.clone();
        let spec = JobSpec::new("test.fail", "three steps", vec![ObjectRef::new(ObjectKind::Server, host.0)])
            .step("add tag", put(&a))
            .step("create file", create_file(host, "/OVS/x.img"))
            .step("edit and fail", move |ctx| {
                ctx.tx(|tx| tx.edit::<Tag>(a_again.id, |t| t.description = "edited".into()))?;
                Err(Error::invalid("step", "the third step fails"))
            });
        let job = mgr.submit(spec).unwrap().wait_done(WAIT).unwrap();
        let name = backend.name();
        assert_eq!(job.state, JobState::Failed, "{name}");
        assert_eq!(job.error.as_ref().map(Error::kind), Some(ErrorKind::InvalidArgument));
        assert_eq!(job.steps_done, ["add tag", "create file"]);
        assert_eq!(job.steps_undone, ["edit and fail", "create file", "add tag"], "{name}: newest first");
        assert!(!mgr.inner.state.lock().unwrap().inv.contains(target), "{name}: the tag is gone");
        assert_eq!(world.file_size("/OVS/x.img"), None, "{name}: the file was deleted on the server");
        assert_eq!(stored_objects(&mgr), before, "{name}: the store holds what it held before the job");
        let stored = stored_job(&mgr, job.id);
        assert_eq!(stored.state, JobState::Failed);
        assert_eq!(stored.steps_undone, job.steps_undone);
        // A failed job raises an Error event on its first target.
        let events = mgr.events(&Default::default()).unwrap();
        assert!(events
            .iter()
            .any(|e| e.event_type == "job.failed.test.fail" && e.severity == Severity::Error));
    }
}

#[test]
fn an_effect_on_a_server_is_journaled_before_it_is_made() {
    let store = MemoryStore::new();
    let world = SimWorld::new();
    let mgr = Backend::Memory(store.clone()).open(&world);
    let host = server(&mgr, "host1");
    let seen = store.clone();
    let w = world.clone();
    let spec = JobSpec::new("test.journal", "journal first", vec![]).step("create file", move |ctx| {
        ctx.will_do(Undo::Storage(StorageUndo::DeleteFile { server: host.0, path: "/OVS/y".into() }))?;
        // The undo is in the store before the file exists.
        let journal = seen.journal(ctx.job_id()).expect("the job is stored before its first effect");
        assert!(journal
            .server_effects()
            .any(|u| matches!(u, Undo::Storage(StorageUndo::DeleteFile { path, .. }) if path == "/OVS/y")));
        assert_eq!(w.file_size("/OVS/y"), None);
        file_storage(&*ctx.hv(host)?)?.create_file("/OVS/y", 1)
    });
    mgr.submit(spec).unwrap().wait(WAIT).unwrap();
    assert_eq!(world.file_size("/OVS/y"), Some(1));
}

#[test]
fn an_abort_between_steps_stops_the_job_and_rolls_it_back() {
    for backend in Backend::all("abort") {
        let mgr = backend.open(&SimWorld::new());
        let a = tag("a");
        let (started_tx, started) = mpsc::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        let put_a = put(&a);
        let spec = JobSpec::new("test.abort", "abort", vec![tag_ref(&a)])
            .step("add tag", move |ctx| {
                put_a(ctx)?;
                started_tx.send(()).unwrap();
                go.recv().unwrap();
                Ok(())
            })
            .step("never", |_| panic!("a step after the abort ran"));
        let handle = mgr.submit(spec).unwrap();
        started.recv().unwrap();
        handle.abort().unwrap();
        go_tx.send(()).unwrap();
        let job = handle.wait_done(WAIT).unwrap();
        assert_eq!(job.state, JobState::Aborted, "{}", backend.name());
        assert_eq!(job.steps_undone, ["add tag"]);
        assert!(!mgr.inner.state.lock().unwrap().inv.contains(tag_ref(&a)));
        assert!(job.abort_requested);
        assert_eq!(stored_job(&mgr, job.id).state, JobState::Aborted);
        assert!(
            mgr.events(&Default::default()).unwrap().iter().all(|e| !e.event_type.starts_with("job.failed")),
            "an aborted job raises no error event"
        );
    }
}

#[test]
fn a_panicking_step_fails_its_job_which_is_rolled_back() {
    for backend in Backend::all("panic") {
        let mgr = backend.open(&SimWorld::new());
        let a = tag("a");
        let spec = JobSpec::new("test.panic", "panic", vec![tag_ref(&a)])
            .step("add tag", put(&a))
            .step("panic", |_| panic!("boom"));
        let job = mgr.submit(spec).unwrap().wait_done(WAIT).unwrap();
        assert_eq!(job.state, JobState::Failed, "{}", backend.name());
        assert!(matches!(&job.error, Some(Error::Internal { message }) if message.contains("panicked")));
        assert!(!mgr.inner.state.lock().unwrap().inv.contains(tag_ref(&a)));
        assert!(mgr.ensure_unlocked(tag_ref(&a)).is_ok(), "the lock is released");
    }
}

#[test]
fn a_job_holds_its_targets_until_it_ends() {
    for backend in Backend::all("locks") {
        let mgr = backend.open(&SimWorld::new());
        let a = tag("a");
        let (go_tx, go) = mpsc::channel::<()>();
        let spec = JobSpec::new("test.lock", "hold", vec![tag_ref(&a)]).step("wait", move |_| {
            go.recv().unwrap();
            Ok(())
        });
        let first = mgr.submit(spec).unwrap();
        let second = mgr.submit(JobSpec::new("test.lock", "second", vec![tag_ref(&a)]).step("x", |_| Ok(())));
        match second {
            Err(Error::OperationInProgress { object, job }) => {
                assert_eq!(object, tag_ref(&a), "{}", backend.name());
                assert_eq!(job, first.id().to_string());
            }
            other => panic!("expected OperationInProgress, got {:?}", other.map(|h| h.id())),
        }
        go_tx.send(()).unwrap();
        first.wait(WAIT).unwrap();
        let third = JobSpec::new("test.lock", "third", vec![tag_ref(&a)]).step("x", |_| Ok(()));
        mgr.submit(third).unwrap().wait(WAIT).unwrap();
    }
}

#[test]
fn a_store_that_refuses_a_write_fails_the_job_before_its_effect_and_keeps_what_it_had() {
    let store = MemoryStore::new();
    let world = SimWorld::new();
    let mgr = Backend::Memory(store.clone()).open(&world);
    let host = server(&mgr, "host1");
    let before = stored_objects(&mgr);
    let jobs_before = mgr.db().jobs(&JobFilter::default()).unwrap().len();
    store.fail_commits_after(0);
    let a = tag("a");
    let spec = JobSpec::new("test.refused", "refused", vec![tag_ref(&a)])
        .step("add tag", put(&a))
        .step("create file", create_file(host, "/OVS/z"));
    let job = mgr.submit(spec).unwrap().wait_done(WAIT).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.as_ref().map(Error::kind), Some(ErrorKind::Database), "{:?}", job.error);
    assert_eq!(world.file_size("/OVS/z"), None, "the effect was never made: its undo could not be journaled");
    assert!(!mgr.inner.state.lock().unwrap().inv.contains(tag_ref(&a)), "the inventory was rolled back");
    assert_eq!(stored_objects(&mgr), before, "nothing of the job reached the store");
    assert_eq!(mgr.db().jobs(&JobFilter::default()).unwrap().len(), jobs_before);
    // The manager no longer takes writes: its memory may be ahead of the store.
    let next = mgr.submit(JobSpec::new("test.refused", "next", vec![]).step("x", |_| Ok(())));
    assert_eq!(next.err().map(|e| e.kind()), Some(ErrorKind::Database));
}

#[test]
fn a_crash_mid_job_is_rolled_back_by_the_next_manager_on_every_server() {
    for backend in Backend::all("crash") {
        let world = SimWorld::new();
        let mgr = backend.open(&world);
        let host = server(&mgr, "host1");
        let a = tag("a");
        let (crashed_tx, crashed) = mpsc::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        let make_file = create_file(host, "/OVS/crash.img");
        let spec = JobSpec::new("test.crash", "crash", vec![tag_ref(&a)]).step("add tag", put(&a)).step(
            "create file",
            move |ctx| {
                make_file(ctx)?;
                crashed_tx.send(()).unwrap();
                go.recv().unwrap();
                Err(Error::invalid("step", "stopped"))
            },
        );
        let handle = mgr.submit(spec).unwrap();
        crashed.recv().unwrap();
        assert_eq!(world.file_size("/OVS/crash.img"), Some(4096));
        // The disk as a crash at this moment leaves it, opened by the next manager.
        let after = backend.crash_copy("crash-after");
        let name = backend.name();
        let next = after.open(&world);
        let job = next.job(handle.id()).unwrap().info();
        assert_eq!(job.state, JobState::Failed, "{name}");
        assert_eq!(job.recovery, Some(Recovery::RolledBack));
        assert!(matches!(job.error, Some(Error::Interrupted { .. })));
        assert_eq!(job.steps_undone, ["create file", "add tag"]);
        assert!(!next.inner.state.lock().unwrap().inv.contains(tag_ref(&a)), "{name}: the tag is gone");
        assert_eq!(
            world.file_size("/OVS/crash.img"),
            None,
            "{name}: the file was deleted once the server was back"
        );
        go_tx.send(()).unwrap();
        handle.wait_done(WAIT).unwrap();
    }
}

#[test]
fn a_job_whose_steps_all_completed_is_finalized_after_a_crash_not_rolled_back() {
    for backend in Backend::all("finalize") {
        let a = tag("a");
        let id = JobId::new();
        {
            // A stopped manager's last commit: both steps done, the job not yet marked finished.
            let mut store: Box<dyn Store> = match &backend {
                Backend::Memory(m) => Box::new(m.clone()),
                Backend::Sqlite(p) => Box::new(SqliteStore::open(p, Default::default()).unwrap()),
            };
            let mut job = Job::queued("test.finalize", "finalize", vec![tag_ref(&a)], 1);
            job.id = id;
            let mut batch = crate::store::Batch::default();
            batch.jobs.push((job.clone(), Some(crate::job::Journal::new(1))));
            store.commit(&batch, 1).unwrap();
            job.state = JobState::Running;
            let journal = crate::job::Journal {
                total: 1,
                steps: vec![(
                    "add tag".into(),
                    vec![Undo::RevertObject { object: tag_ref(&a), before: None }],
                )],
                done: 1,
            };
            let mut batch = crate::store::Batch::default();
            batch.objects.push(crate::store::ObjectWrite::Put(a.clone().into_object()));
            batch.jobs.push((job, Some(journal)));
            store.commit(&batch, 2).unwrap();
        }
        let mgr = backend.open(&SimWorld::new());
        let job = mgr.job(id).unwrap().info();
        assert_eq!(job.state, JobState::Completed, "{}", backend.name());
        assert_eq!(job.recovery, Some(Recovery::Finalized));
        assert!(mgr.inner.state.lock().unwrap().inv.contains(tag_ref(&a)), "the finished work is kept");
        assert_eq!(
            mgr.db().jobs(&JobFilter { object: Some(a.id.0), ..Default::default() }).unwrap().len(),
            1
        );
    }
}

#[test]
fn a_job_looked_up_by_id_as_it_ends_is_found_with_its_outcome() {
    // A client that has only a job's id (a service's client, C, Python) looks it up again and again
    // while the job ends: between the job leaving the live table and its record reaching the
    // database it must be neither missing nor a stale record that never ends.
    for backend in Backend::all("lookup_as_it_ends") {
        let mgr = backend.open(&SimWorld::new());
        for i in 0..200 {
            let id = mgr.create_object(Object::Tag(tag(&format!("t{i}")))).unwrap().id();
            let watcher = {
                let mgr = mgr.clone();
                std::thread::spawn(move || loop {
                    let h = mgr.job(id).map_err(|e| format!("looked up: {e}"))?;
                    let rec = h.info();
                    if rec.state.is_terminal() {
                        return Ok::<_, String>(rec);
                    }
                    // A record that is not over must be live: waiting on it briefly either returns
                    // its outcome or times out, and the next lookup sees more.
                    match h.wait_done(Some(Duration::from_micros(50))) {
                        Ok(done) => return Ok(done),
                        Err(Error::Timeout { .. }) => {}
                        Err(e) => return Err(format!("waited: {e}")),
                    }
                })
            };
            let job = watcher.join().unwrap().unwrap_or_else(|e| panic!("{}: job {i}: {e}", backend.name()));
            assert_eq!(job.state, JobState::Completed, "{}: {job:?}", backend.name());
        }
        mgr.close(Duration::from_secs(10)).unwrap();
    }
}
