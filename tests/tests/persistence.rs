//! The manager database: reopening gives everything back; a crash mid-job is rolled back at reopen.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ovm_core::model::*;
use ovm_core::store::{EventFilter, JobFilter};
use ovm_core::{Error, ErrorKind, Manager};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ovm-test-{}-{}", name, ovm_core::uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("manager.db")
}

#[test]
fn reopening_gives_back_objects_jobs_and_events() {
    let path = temp_db("reopen");
    let (vm, job_count, event, objects) = {
        let lab = lab_with(
            Manager::builder()
                .database_uri(path.to_str().unwrap())
                .unwrap()
                .recurring_jobs(false)
                .open()
                .unwrap(),
            16384,
        );
        let vm = lab.running_vm("persisted");
        let e = lab
            .mgr
            .raise_event(ObjectRef::new(ObjectKind::Vm, vm), Severity::Warning, "t.w", "kept")
            .unwrap();
        let jobs = lab.mgr.jobs(&JobFilter::default()).unwrap().len();
        let objects = lab.mgr.read(|inv| inv.all_objects().len());
        lab.mgr.close(std::time::Duration::from_secs(5)).unwrap();
        (vm, jobs, e, objects)
    };
    let mgr = Manager::builder()
        .database_uri(path.to_str().unwrap())
        .unwrap()
        .recurring_jobs(false)
        .open()
        .unwrap();
    assert_eq!(mgr.read(|inv| inv.all_objects().len()), objects);
    let v = mgr.vm(vm).unwrap();
    assert_eq!(v.name, "persisted");
    assert_eq!(mgr.jobs(&JobFilter::default()).unwrap().len(), job_count);
    assert_eq!(mgr.event(event.id).unwrap(), event);
    assert!(mgr.events(&EventFilter::default()).unwrap().len() >= 3);
    // The simulated host is new after the restart, so the VM that was running is found stopped,
    // with a Warning event, rather than believed running.
    assert_eq!(v.power_state, PowerState::Stopped);
    assert!(mgr
        .events(&EventFilter { object: Some(vm.0), ..Default::default() })
        .unwrap()
        .iter()
        .any(|e| e.event_type == "vm.stopped"));
    assert!(mgr.current_token().unwrap() > 0);
}

#[test]
fn bad_database_files_are_refused_and_left_untouched() {
    let path = temp_db("bad");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Manager::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Database);
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(Manager::builder().database_uri("postgres://x").is_err());
    assert!(Manager::builder().database_uri("").is_err());
}

#[test]
fn a_crash_mid_job_is_rolled_back_at_reopen() {
    let path = temp_db("crash");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ovm-crash-child"))
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child manager");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    assert_eq!(parts.next(), Some("READY"), "child said {line:?}");
    let vm: VmId = parts.next().unwrap().parse().unwrap();
    let job: JobId = parts.next().unwrap().parse().unwrap();
    // While the child lives, the database is its own: a second manager is refused at once, told who
    // holds it, and changes nothing.
    match Manager::builder().database_uri(path.to_str().unwrap()).unwrap().recurring_jobs(false).open() {
        Err(Error::DatabaseLocked { pid, path: p }) => {
            assert_eq!(pid, Some(child.id()), "the holder is the child");
            assert_eq!(p, path.display().to_string());
        }
        other => panic!("expected DatabaseLocked, got {:?}", other.map(|_| ())),
    }
    // SIGKILL: no destructor, no clean shutdown; the kernel drops the child's lock.
    child.kill().unwrap();
    child.wait().unwrap();

    let mgr = Manager::builder()
        .database_uri(path.to_str().unwrap())
        .unwrap()
        .recurring_jobs(false)
        .open()
        .unwrap();
    let j = mgr.job(job).unwrap().info();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.recovery, Some(Recovery::RolledBack));
    assert!(matches!(j.error, Some(Error::Interrupted { .. })), "{:?}", j.error);
    assert_eq!(j.steps_undone, vec!["start domain", "place"]);
    let v = mgr.vm(vm).unwrap();
    assert_eq!(v.power_state, PowerState::Stopped, "Starting was rolled back");
    assert_eq!(v.server, None, "placement was rolled back");
    // Nothing is left running or locked: the VM starts normally now.
    assert!(mgr
        .jobs(&JobFilter { states: vec![JobState::Running, JobState::Queued], ..Default::default() })
        .unwrap()
        .is_empty());
    ok(mgr.start_vm(vm));
    assert_eq!(mgr.vm(vm).unwrap().power_state, PowerState::Running);
}

#[test]
fn a_database_has_one_manager_until_it_is_closed() {
    let path = temp_db("lock");
    let open =
        || Manager::builder().database_uri(path.to_str().unwrap()).unwrap().recurring_jobs(false).open();
    let first = open().unwrap();
    let pool = PoolId(result_id(first.create_pool(ovm_core::manager::PoolSpec::new("p"))));
    // A second manager in the same process is refused too, naming this process.
    let err = open().map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DatabaseLocked);
    assert!(matches!(err, Error::DatabaseLocked { pid: Some(p), .. } if p == std::process::id()), "{err:?}");
    assert!(err.to_string().contains(&format!("process {}", std::process::id())), "{err}");
    // Closing gives the database up: the first manager still answers reads but refuses writes...
    first.close(std::time::Duration::from_secs(5)).unwrap();
    assert!(first.pool(pool).is_ok());
    assert_eq!(
        first.create_pool(ovm_core::manager::PoolSpec::new("q")).map(|_| ()).unwrap_err().kind(),
        ErrorKind::Closed
    );
    // ... and the next manager opens the file and finds what the first one wrote.
    let second = open().unwrap();
    assert_eq!(second.pool(pool).unwrap().name, "p");
    drop(second);
    // Dropping a manager without closing it releases the database as well.
    drop(open().unwrap());
    drop(first);
    open().unwrap();
}
