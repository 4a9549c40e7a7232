//! The `ovm` command end to end: `ovm serve` on a temporary socket as a child process, driven by
//! the `ovm` command over `OVM_CONNECT`, with simulated servers.
//!
//! Tables are compared with the files in `tests/golden/cli/` after ids are replaced by `<id>`;
//! `OVM_BLESS=1` rewrites those files from the output.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const OVM: &str = env!("CARGO_BIN_EXE_ovm");

struct Service {
    dir: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn start(tag: &str) -> Service {
        Service::start_with(tag, |_| Vec::new())
    }

    /// Starts `ovm serve` with more arguments, made from the service's directory.
    fn start_with(tag: &str, extra: impl FnOnce(&Path) -> Vec<String>) -> Service {
        let dir = std::env::temp_dir().join(format!("ovm-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let extra = extra(&dir);
        let mut s = Service { dir, child: None };
        s.spawn(&extra);
        s
    }

    /// Runs `ovm serve` on the service's database and socket, and waits until it answers.
    fn spawn(&mut self, extra: &[String]) {
        let child = Command::new(OVM)
            .arg("--db")
            .arg(self.dir.join("m.db"))
            .args(["serve", "--socket"])
            .arg(self.socket())
            .args(extra)
            .env_remove("OVM_CONNECT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "the service did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("m.sock")
    }

    fn uri(&self) -> String {
        format!("ovm+unix://{}", self.socket().display())
    }

    /// Runs `ovm ARGS` against the service.
    fn ovm(&self, args: &str) -> Output {
        Command::new(OVM).args(args.split_whitespace()).env("OVM_CONNECT", self.uri()).output().unwrap()
    }

    /// Runs `ovm ARGS`, which must succeed, and returns its standard output.
    fn ok(&self, args: &str) -> String {
        let out = self.ovm(args);
        assert!(
            out.status.success(),
            "ovm {args}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Sends the service a signal.
    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().unwrap();
        // SAFETY: kill has no memory preconditions; the pid is our own child's, not yet reaped.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    }

    /// Stops the service with SIGTERM and returns its exit status and standard error.
    fn terminate(&mut self) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let out = wait_output(&mut child, Duration::from_secs(60));
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn wait_output(child: &mut Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    Output { status: child.wait().unwrap(), stdout: Vec::new(), stderr: stderr.into_bytes() }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces every UUID with `<id>` (the column keeps its width: ids are all 36 characters wide,
/// and so is the padded marker).
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut rest = line;
        let mut l = String::new();
        while !rest.is_empty() {
            let candidate =
                rest.get(..36).filter(|c| uuid::Uuid::parse_str(c).is_ok() && c.chars().nth(8) == Some('-'));
            if candidate.is_some() {
                l.push_str(&format!("{:<36}", "<id>"));
                rest = &rest[36..];
            } else {
                let c = rest.chars().next().unwrap();
                l.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cli").join(name);
    let actual = normalise(actual);
    if std::env::var_os("OVM_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{name} differs from {}", path.display());
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A test of a JSON value's type, such as `serde_json::Value::is_string`.
type IsType = fn(&serde_json::Value) -> bool;

/// Checks that `v` is an object with these keys of these JSON types.
fn shape(v: &serde_json::Value, fields: &[(&str, IsType)]) {
    for (k, is) in fields {
        let f = v.get(k).unwrap_or_else(|| panic!("no {k} in {v}"));
        assert!(is(f), "{k} has the wrong type in {v}");
    }
}

#[test]
fn an_administrator_at_work_on_a_service() {
    let mut svc = Service::start("admin");
    for name in ["a", "b"] {
        svc.ok(&format!("server discover sim://{name}?cpus=8&memory_mib=16384 --password ovm-sim"));
    }
    svc.ok("pool create p1");
    svc.ok("pool add-server p1 a");
    svc.ok("pool add-server p1 b");
    svc.ok("vm create web01 --pool p1 --memory 1024 --vcpus 2");
    svc.ok("vm create db01 --pool p1 --memory 2048 --ha");
    let started = svc.ok("vm start web01");
    assert!(started.contains("StartVm") && started.contains("Completed"), "{started}");

    for (verb, state) in [("pause", "Paused"), ("resume", "Running")] {
        svc.ok(&format!("vm {verb} web01"));
        assert_eq!(json(&svc.ok("--json vm show web01"))["power_state"], state);
    }
    let console = json(&svc.ok("--json vm console web01"));
    assert!(console.is_string(), "{console}");

    golden("server-list.txt", &svc.ok("server list"));
    golden("pool-list.txt", &svc.ok("pool list"));
    let vms = svc.ok("vm list");
    assert!(vms.contains("web01") && vms.contains("Running"), "{vms}");
    // Where web01 runs is the placement policy's choice: only the stopped VM's row is pinned.
    golden(
        "vm-list-db01.txt",
        &vms.lines().filter(|l| !l.starts_with("web01")).collect::<Vec<_>>().join("\n"),
    );

    // --json: arrays of the objects, with their fields typed.
    let list = json(&svc.ok("--json vm list"));
    let vms = list.as_array().unwrap();
    assert_eq!(vms.len(), 2);
    for v in vms {
        shape(
            v,
            &[
                ("id", |v| v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())),
                ("name", serde_json::Value::is_string),
                ("power_state", serde_json::Value::is_string),
                ("config", serde_json::Value::is_object),
                ("pool", serde_json::Value::is_string),
            ],
        );
        shape(
            &v["config"],
            &[("memory_mib", serde_json::Value::is_u64), ("vcpus", serde_json::Value::is_u64)],
        );
    }
    let servers = json(&svc.ok("--json server list"));
    assert_eq!(servers.as_array().unwrap().len(), 2);
    shape(
        &servers[0],
        &[("address", serde_json::Value::is_string), ("hardware", serde_json::Value::is_object)],
    );
    let shown = json(&svc.ok("--json vm show web01"));
    assert_eq!(shown["name"], "web01");
    assert_eq!(shown, vms.iter().find(|v| v["name"] == "web01").unwrap().clone());

    // A job started without waiting, then waited for by id.
    let id = svc.ok("vm stop web01 --no-wait").trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let waited = json(&svc.ok(&format!("--json job wait {id}")));
    shape(
        &waited,
        &[
            ("id", serde_json::Value::is_string),
            ("kind", serde_json::Value::is_string),
            ("state", serde_json::Value::is_string),
            ("progress", serde_json::Value::is_number),
        ],
    );
    assert_eq!(waited["state"], "Completed");
    assert_eq!(waited["kind"], "StopVm");
    let jobs = json(&svc.ok("--json job list"));
    assert!(jobs.as_array().unwrap().iter().any(|j| j["id"] == id.as_str()));
    let table = svc.ok("job list");
    assert!(table.starts_with("ID "), "{table}");
    assert_eq!(table.lines().count(), jobs.as_array().unwrap().len() + 1);

    let events = svc.ok("event list");
    assert!(events.starts_with("ID ") && events.contains("SEVERITY"), "{events}");
    assert!(json(&svc.ok("--json event list")).is_array());

    // Errors: the exit status is the error kind's.
    let missing = svc.ovm("vm start nope");
    assert_eq!(missing.status.code(), Some(11), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
    let twice = svc.ovm("pool create p1");
    assert_eq!(twice.status.code(), Some(10 + ovm_core::ErrorKind::Conflict.code() as i32), "{twice:?}");

    // The database is held by the service: a second manager on it is refused, typed.
    let held = Command::new(OVM).arg("--db").arg(svc.dir.join("m.db")).args(["vm", "list"]).output().unwrap();
    assert_eq!(held.status.code(), Some(10 + ovm_core::ErrorKind::DatabaseLocked.code() as i32), "{held:?}");

    // Read beside the service, for reports: the same records; changes are refused.
    let read_only = |args: &[&str]| {
        Command::new(OVM)
            .arg("--db")
            .arg(svc.dir.join("m.db"))
            .arg("--read-only")
            .args(args)
            .output()
            .unwrap()
    };
    let report = read_only(&["--json", "vm", "list"]);
    assert!(report.status.success(), "{report:?}");
    assert_eq!(json(&String::from_utf8_lossy(&report.stdout)), json(&svc.ok("--json vm list")));
    let jobs_read = read_only(&["--json", "job", "show", &id]);
    assert_eq!(json(&String::from_utf8_lossy(&jobs_read.stdout))["state"], "Completed");
    let refused = read_only(&["pool", "create", "p9"]);
    assert_eq!(
        refused.status.code(),
        Some(10 + ovm_core::ErrorKind::PermissionDenied.code() as i32),
        "{refused:?}"
    );
    assert!(!svc.ok("pool list").contains("p9"));

    // SIGTERM: a clean stop that removes the socket and lets the database go.
    let (status, stderr) = svc.terminate();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(!svc.socket().exists());
    let after = Command::new(OVM)
        .arg("--db")
        .arg(svc.dir.join("m.db"))
        .args(["--json", "vm", "list"])
        .output()
        .unwrap();
    assert!(after.status.success(), "{after:?}");
    assert_eq!(json(&String::from_utf8_lossy(&after.stdout)).as_array().unwrap().len(), 2);
}

#[test]
fn a_client_sending_garbage_does_not_disturb_the_others() {
    let svc = Service::start("garbage");
    svc.ok("pool create p1");
    // A frame far over the limit, in place of a hello: refused, that connection closed.
    let mut bad = UnixStream::connect(svc.socket()).unwrap();
    bad.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut bad, &mut answer).unwrap();
    let text = String::from_utf8_lossy(answer.get(4..).unwrap_or_default()).into_owned();
    assert!(text.contains("refused") && text.contains("frame"), "{text}");
    // A connection that says nothing at all holds no one up either.
    let _silent = UnixStream::connect(svc.socket()).unwrap();
    assert!(svc.ok("pool list").contains("p1"));
}

#[test]
fn completions_and_the_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(OVM).args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("discover") && text.contains("ovm"), "{shell}");
    }
    let man = Command::new(OVM).arg("man").output().unwrap();
    assert!(man.status.success());
    let text = String::from_utf8(man.stdout).unwrap();
    assert!(text.starts_with(".ie") || text.contains(".TH ovm"), "{}", &text[..text.len().min(200)]);
    let usage = Command::new(OVM).args(["vm", "frobnicate"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn the_change_feed_is_watched_over_the_service() {
    let svc = Service::start("watch");
    svc.ok("pool create p0");
    // Replayed from the start of the feed: the first change, as a JSON line.
    let replayed = svc.ok("event watch --from 0 --count 1");
    let first = json(replayed.lines().next().unwrap());
    shape(
        &first,
        &[
            ("token", serde_json::Value::is_u64),
            ("object", serde_json::Value::is_object),
            ("op", serde_json::Value::is_string),
            ("at", serde_json::Value::is_u64),
        ],
    );
    // Live: a watcher sees a change made after it started (pools are created until it has one).
    let mut watcher = Command::new(OVM)
        .args(["event", "watch", "--count", "1"])
        .env("OVM_CONNECT", svc.uri())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut created = 0;
    while watcher.try_wait().unwrap().is_none() {
        assert!(created < 100, "the watcher saw none of {created} changes");
        created += 1;
        svc.ok(&format!("pool create live{created}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = watcher.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let change = json(line.lines().next().unwrap());
    assert!(change["token"].as_u64().unwrap() > first["token"].as_u64().unwrap());
}

#[test]
fn a_second_service_on_a_held_database_is_refused() {
    let svc = Service::start("race");
    let second = Command::new(OVM)
        .arg("--db")
        .arg(svc.dir.join("m.db"))
        .args(["serve", "--socket"])
        .arg(svc.dir.join("other.sock"))
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(10 + ovm_core::ErrorKind::DatabaseLocked.code() as i32),
        "{second:?}"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"), "{second:?}");
    assert!(!svc.dir.join("other.sock").exists());
    // Nor may a second service take over the first one's socket.
    let db2 = svc.dir.join("other.db");
    let stolen = Command::new(OVM)
        .arg("--db")
        .arg(&db2)
        .args(["serve", "--socket"])
        .arg(svc.socket())
        .output()
        .unwrap();
    assert_eq!(stolen.status.code(), Some(10 + ovm_core::ErrorKind::Conflict.code() as i32), "{stolen:?}");
    assert!(svc.ok("pool list").starts_with("NAME"));
}

#[test]
fn sighup_rereads_the_settings() {
    let mut svc = Service::start_with("hup", |dir| {
        let settings = dir.join("settings.json");
        std::fs::write(&settings, r#"{"log_level": "warn"}"#).unwrap();
        vec!["--settings".into(), settings.display().to_string()]
    });
    let settings = svc.dir.join("settings.json");
    let settle = || std::thread::sleep(Duration::from_millis(600));
    std::fs::write(&settings, r#"{"log_level": "debug"}"#).unwrap();
    svc.signal(libc::SIGHUP);
    settle();
    std::fs::write(&settings, r#"{"log_level": "loud"}"#).unwrap();
    svc.signal(libc::SIGHUP);
    settle();
    // Still serving.
    assert!(svc.ok("pool list").starts_with("NAME"));
    let (status, stderr) = svc.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("settings reloaded (log level DEBUG)"), "{stderr}");
    assert!(stderr.contains("settings not reloaded"), "{stderr}");
}

#[test]
fn a_service_killed_with_sigkill_restarts_on_its_database() {
    let mut svc = Service::start("sigkill");
    svc.ok("pool create p1");
    let id = svc.ok("pool create p2 --no-wait").trim().to_owned();
    svc.signal(libc::SIGKILL);
    let mut child = svc.child.take().unwrap();
    assert!(!child.wait().unwrap().success());
    // The kernel dropped its lock; its socket file is left behind, stale.
    assert!(svc.socket().exists());
    svc.spawn(&[]);
    let pools = svc.ok("pool list");
    assert!(pools.contains("p1"), "{pools}");
    // The job started just before the kill either completed or was rolled back on restart: it is
    // over, and the pool exists exactly when it completed.
    let job = json(&svc.ok(&format!("--json job show {id}")));
    match job["state"].as_str().unwrap() {
        "Completed" => assert!(pools.contains("p2"), "{pools}"),
        "Failed" | "Aborted" => assert!(!pools.contains("p2"), "{pools}"),
        other => panic!("job {id} is {other} after the restart"),
    }
}

#[test]
fn a_service_killed_with_sigkill_in_the_middle_of_a_job_rolls_it_back_on_restart() {
    let mut svc = Service::start("sigkill-mid-job");
    // A server that takes 5 s to build a domain: the start job is killed while it builds.
    svc.ok("server discover sim://slow?create_ms=5000 --password ovm-sim");
    svc.ok("pool create p1");
    svc.ok("pool add-server p1 slow");
    svc.ok("vm create web01 --pool p1 --memory 1024");
    let id = svc.ok("vm start web01 --no-wait").trim().to_owned();
    // Wait until the job is running in the database itself (read beside the service, read-only):
    // the kill then lands in its step on the server, after its first durable write.
    let db = svc.dir.join("m.db");
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let out = Command::new(OVM)
            .arg("--db")
            .arg(&db)
            .args(["--read-only", "--json", "job", "show", &id])
            .env_remove("OVM_CONNECT")
            .output()
            .unwrap();
        if out.status.success() && json(&String::from_utf8_lossy(&out.stdout))["state"] == "Running" {
            break;
        }
        assert!(Instant::now() < deadline, "job {id} was not running in the database in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    svc.signal(libc::SIGKILL);
    let mut child = svc.child.take().unwrap();
    assert!(!child.wait().unwrap().success());

    svc.spawn(&[]);
    let job = json(&svc.ok(&format!("--json job show {id}")));
    assert_eq!(job["state"], "Failed", "{job}");
    assert_eq!(job["recovery"], "RolledBack", "{job}");
    assert!(job["message"].as_str().unwrap().contains("rolled back after a manager restart"), "{job}");
    assert_eq!(json(&svc.ok("--json vm show web01"))["power_state"], "Stopped");
    // Nothing is left locked or half-done: the VM starts on the restarted service.
    let started = svc.ok("vm start web01");
    assert!(started.contains("Completed"), "{started}");
    assert_eq!(json(&svc.ok("--json vm show web01"))["power_state"], "Running");
}

#[test]
fn storage_templates_and_networks_from_the_shell() {
    let svc = Service::start("storage");
    svc.ok("server discover sim://a?cpus=8&memory_mib=16384 --password ovm-sim");
    svc.ok("pool create p1");
    svc.ok("pool add-server p1 a");
    svc.ok("storage register-local a-local --server a");
    let fss = json(&svc.ok("--json storage file-systems a-local"));
    let fs = fss[0]["name"].as_str().unwrap().to_owned();
    assert!(svc.ok("storage file-systems a-local").contains("/OVS/Local"));
    svc.ok(&format!("repo create r1 --file-system {fs} --pool p1"));
    svc.ok("repo present r1 a");
    svc.ok("disk create sys --repo r1 --size 64");
    assert_eq!(json(&svc.ok("--json disk show sys"))["size_bytes"], 64 << 20);
    svc.ok("vm create base --pool p1 --repo r1 --disk sys --memory 256");
    let base = json(&svc.ok("--json vm show base"));
    assert_eq!(base["config"]["disks"][0]["slot"], 0, "{base}");
    svc.ok("vm to-template base tpl");
    assert!(svc.ok("template list").contains("tpl"));
    svc.ok("template clone tpl web1 --pool p1");
    svc.ok("vm clone base base2 --pool p1");
    svc.ok("network create vmnet --bridge xenbr1 --function vm --port a:eth1");
    let net = json(&svc.ok("--json network show vmnet"));
    assert_eq!(net["functions"], serde_json::json!(["VirtualMachine"]), "{net}");
    svc.ok("vm add-vnic web1 --network vmnet");
    svc.ok("vm start web1");
    let web1 = json(&svc.ok("--json vm show web1"));
    assert_eq!(web1["power_state"], "Running");
    assert_eq!(web1["config"]["vnics"].as_array().unwrap().len(), 1, "{web1}");
    // The clones have disks of their own, in the repository.
    let disks = json(&svc.ok("--json disk list"));
    assert_eq!(disks.as_array().unwrap().len(), 4, "{disks}");
    // Wrong names are typed errors with their exit status (NotFound: 11), and a bad value is a usage
    // error (2).
    assert_eq!(svc.ovm("template clone nope x").status.code(), Some(11));
    assert_eq!(svc.ovm("network create n2 --bridge b --function teleport").status.code(), Some(2));
    assert_eq!(svc.ovm("vm create v9 --type xen").status.code(), Some(2));
}
