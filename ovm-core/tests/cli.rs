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

/// Checks `v` against the JSON Schema `schema` (the keywords `ovm schema` emits; any other keyword
/// fails the test rather than being skipped). Returns the first violation.
fn validate(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
) -> Result<(), String> {
    use serde_json::Value;
    let Some(obj) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{at}: not allowed by {schema}")),
        };
    };
    for (k, s) in obj {
        match k.as_str() {
            "$schema" | "$defs" | "title" | "description" | "format" | "default" | "examples"
            | "readOnly" | "writeOnly" | "deprecated" => {}
            "$ref" => {
                let name = s.as_str().unwrap().strip_prefix("#/$defs/").expect("a local reference");
                validate(root, &root["$defs"][name], v, at)?;
            }
            "type" => {
                let types: Vec<&str> = match s {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("type {s}"),
                };
                let ok = types.iter().any(|t| match *t {
                    "null" => v.is_null(),
                    "boolean" => v.is_boolean(),
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "number" => v.is_number(),
                    "integer" => v.is_i64() || v.is_u64(),
                    other => panic!("type {other}"),
                });
                if !ok {
                    return Err(format!("{at}: {v} is not of type {s}"));
                }
            }
            "enum" => {
                if !s.as_array().unwrap().contains(v) {
                    return Err(format!("{at}: {v} is not one of {s}"));
                }
            }
            "const" => {
                if s != v {
                    return Err(format!("{at}: {v} is not {s}"));
                }
            }
            "minimum" => {
                if v.as_f64().is_some_and(|x| x < s.as_f64().unwrap()) {
                    return Err(format!("{at}: {v} < {s}"));
                }
            }
            "maximum" => {
                if v.as_f64().is_some_and(|x| x > s.as_f64().unwrap()) {
                    return Err(format!("{at}: {v} > {s}"));
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for r in s.as_array().unwrap() {
                        if !o.contains_key(r.as_str().unwrap()) {
                            return Err(format!("{at}: {r} is missing"));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in s.as_object().unwrap() {
                        if let Some(x) = o.get(name) {
                            validate(root, sub, x, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(o) = v.as_object() {
                    let known = obj.get("properties").and_then(Value::as_object);
                    for (name, x) in o {
                        if !known.is_some_and(|p| p.contains_key(name)) {
                            validate(root, s, x, &format!("{at}.{name}"))?;
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    let skip = obj.get("prefixItems").and_then(Value::as_array).map_or(0, Vec::len);
                    for (i, x) in a.iter().enumerate().skip(skip) {
                        validate(root, s, x, &format!("{at}[{i}]"))?;
                    }
                }
            }
            "prefixItems" => {
                if let Some(a) = v.as_array() {
                    for (i, (sub, x)) in s.as_array().unwrap().iter().zip(a).enumerate() {
                        validate(root, sub, x, &format!("{at}[{i}]"))?;
                    }
                }
            }
            "minItems" | "maxItems" => {
                if let Some(a) = v.as_array() {
                    let n = s.as_u64().unwrap() as usize;
                    if (k == "minItems" && a.len() < n) || (k == "maxItems" && a.len() > n) {
                        return Err(format!("{at}: {} items against {k} {n}", a.len()));
                    }
                }
            }
            "oneOf" | "anyOf" => {
                let matches =
                    s.as_array().unwrap().iter().filter(|sub| validate(root, sub, v, at).is_ok()).count();
                if (k == "oneOf" && matches != 1) || (k == "anyOf" && matches == 0) {
                    return Err(format!("{at}: {v} matches {matches} of the {k} alternatives"));
                }
            }
            "uniqueItems" => {
                if let (Some(a), Some(true)) = (v.as_array(), s.as_bool()) {
                    for (i, x) in a.iter().enumerate() {
                        if a[..i].contains(x) {
                            return Err(format!("{at}: {x} twice"));
                        }
                    }
                }
            }
            "allOf" => {
                for sub in s.as_array().unwrap() {
                    validate(root, sub, v, at)?;
                }
            }
            other => panic!("the schema uses {other:?}, which this check does not know"),
        }
    }
    Ok(())
}

#[test]
fn json_output_follows_the_published_schema() {
    let svc = Service::start("schema");
    let schema = |record: &str| json(&svc.ok(&format!("schema {record}")));
    let check = |record: &str, line: &str| {
        let s = schema(record);
        let v = json(&svc.ok(line));
        let items = match &v {
            serde_json::Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        assert!(!items.is_empty(), "{line} printed nothing to check");
        for item in &items {
            if let Err(e) = validate(&s, &s, item, record) {
                panic!("ovm {line}: {e}");
            }
        }
        items
    };
    svc.ok("server discover sim://a?cpus=8&memory_mib=16384 --password ovm-sim");
    svc.ok("pool create p1");
    svc.ok("pool add-server p1 a");
    svc.ok("storage register-local a-local --server a");
    let fs = json(&svc.ok("--json storage file-systems a-local"))[0]["name"].as_str().unwrap().to_owned();
    svc.ok(&format!("repo create r1 --file-system {fs} --pool p1"));
    svc.ok("repo present r1 a");
    svc.ok("disk create sys --repo r1 --size 64");
    svc.ok("vm create web01 --pool p1 --repo r1 --disk sys --memory 256 --ha");
    svc.ok("vm start web01");
    // A refused call (no job), then a failed job with its typed error and the event it raises.
    assert_eq!(svc.ovm("vm delete web01").status.code(), Some(12));
    assert_eq!(svc.ovm("repo import-kernel r1 k --kernel /nonexistent/vmlinux").status.code(), Some(17));
    check("Server", "--json server list");
    check("ServerPool", "--json pool show p1");
    check("FileServer", "--json storage list");
    check("FileSystem", "--json storage file-systems a-local");
    check("Repository", "--json repo list");
    check("VirtualDisk", "--json disk list");
    check("Network", "--json network list");
    let vm = check("Vm", "--json vm show web01").remove(0);
    let jobs = check("Job", "--json job list");
    assert!(
        jobs.iter().any(|j| j["state"] == "Failed" && j["error"].is_object()),
        "no failed job in {jobs:?}"
    );
    check("Event", "--json event list");
    let id = json(&svc.ok("--json vm stop web01 --no-wait"))["id"].as_str().unwrap().to_owned();
    check("Job", &format!("--json job wait {id}"));
    let watched = svc.ok("event watch --from 0 --count 5");
    let change = schema("Change");
    for line in watched.lines() {
        validate(&change, &change, &json(line), "Change").unwrap();
    }
    // The check is not vacuous: a record out of its schema is caught.
    let vm_schema = schema("Vm");
    let mut bad = vm.clone();
    bad["power_state"] = "Flying".into();
    assert!(validate(&vm_schema, &vm_schema, &bad, "Vm").is_err());
    let mut bad = vm;
    bad.as_object_mut().unwrap().remove("name");
    assert!(validate(&vm_schema, &vm_schema, &bad, "Vm").is_err());
}

/// `ovm ARGS` against `svc` with more environment variables.
fn ovm_env(svc: &Service, args: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(OVM);
    c.args(args.split_whitespace())
        .env("OVM_CONNECT", svc.uri())
        .env_remove("OVM_USER")
        .env_remove("OVM_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn users_log_in_with_their_roles_and_the_audit_log_names_them() {
    let denied = 10 + 17; // PermissionDenied
    let mut svc = Service::start("users");
    let add = ovm_env(&svc, "user add alice --role read-only", &[("OVM_PASSWORD", "alice-password")]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    // No password to be had: refused, typed, and nothing created.
    let no_pw = ovm_env(&svc, "user add bob --role operator", &[]);
    assert_eq!(no_pw.status.code(), Some(10 + 4), "{}", String::from_utf8_lossy(&no_pw.stderr));
    let users = svc.ok("user list");
    assert!(users.contains("alice") && users.contains("read-only") && !users.contains("bob"), "{users}");

    let alice = [("OVM_USER", "alice"), ("OVM_PASSWORD", "alice-password")];
    let listed = ovm_env(&svc, "pool list", &alice);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let create = ovm_env(&svc, "pool create p1", &alice);
    assert_eq!(create.status.code(), Some(denied), "{}", String::from_utf8_lossy(&create.stderr));
    let wrong = ovm_env(&svc, "pool list", &[("OVM_USER", "alice"), ("OVM_PASSWORD", "guess-guess")]);
    assert_eq!(wrong.status.code(), Some(denied));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("permission denied"));
    assert!(!svc.ok("pool list").contains("p1"));

    let log = json(&svc.ok("--json audit list"));
    let rows: Vec<(String, String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            let outcome = e["outcome"].as_str().map_or_else(
                || e["outcome"].as_object().unwrap().keys().next().unwrap().clone(),
                str::to_owned,
            );
            (e["user"].as_str().unwrap().to_owned(), e["method"].as_str().unwrap().to_owned(), outcome)
        })
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].0.starts_with("local:") && rows[0].1 == "create_user" && rows[0].2 == "Ok", "{rows:?}");
    assert_eq!(rows[1], ("alice".into(), "create_pool".into(), "Refused".into()));
    assert_eq!(rows[2], ("alice".into(), "hello".into(), "Refused".into()));
    assert!(!log.to_string().contains("alice-password"));
    let table = svc.ok("audit list --refused");
    assert_eq!(table.lines().count(), 3, "{table}");
    // A read-only user cannot read the audit log.
    assert_eq!(ovm_env(&svc, "audit list", &alice).status.code(), Some(denied));
    let (status, _) = svc.terminate();
    assert!(status.success());
}

#[test]
fn a_key_file_keeps_the_managers_key_encrypted_and_is_needed_to_open_the_database() {
    use std::os::unix::fs::PermissionsExt;
    let mut svc = Service::start_with("keyfile", |dir| {
        let key = dir.join("manager.key");
        std::fs::write(&key, "5a".repeat(32)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        vec!["--key-file".into(), key.display().to_string()]
    });
    let key = svc.dir.join("manager.key");
    svc.ok("pool create p1");
    let (status, _) = svc.terminate();
    assert!(status.success());
    let db = std::fs::read(svc.dir.join("m.db")).unwrap();
    assert!(!db.windows(11).any(|w| w == b"PRIVATE KEY"), "the private key is in the database in the clear");
    let db_arg = svc.dir.join("m.db");
    // `ovm --db m.db [--key-file KEY] pool list`, beside the service's environment.
    let pool_list = |key: Option<&Path>| {
        let mut c = Command::new(OVM);
        c.arg("--db").arg(&db_arg).env_remove("OVM_KEY_FILE");
        if let Some(k) = key {
            c.arg("--key-file").arg(k);
        }
        c.args(["pool", "list"]).output().unwrap()
    };
    let without = pool_list(None);
    assert_eq!(without.status.code(), Some(10 + 17), "{}", String::from_utf8_lossy(&without.stderr));
    let with = pool_list(Some(&key));
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    assert!(String::from_utf8_lossy(&with.stdout).contains("p1"));
    // A key file others may read is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = pool_list(Some(&key));
    assert_eq!(loose.status.code(), Some(10 + 4));
}

#[test]
fn users_log_in_over_tls_with_the_services_certificate_pinned() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut svc = Service::start_with("tls", |_| vec!["--listen".into(), format!("127.0.0.1:{port}")]);
    let kept = std::fs::read_to_string(svc.dir.join("m.tls.json")).unwrap();
    let identity: ovm_core::agent::tls::Identity = serde_json::from_str(&kept).unwrap();
    let fp = identity.fingerprint().unwrap();
    let add = ovm_env(&svc, "user add alice --role operator", &[("OVM_PASSWORD", "alice-password")]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let tls = |args: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(OVM);
        c.args(args.split_whitespace())
            .env("OVM_CONNECT", format!("ovm+tls://127.0.0.1:{port}"))
            .env_remove("OVM_USER")
            .env_remove("OVM_PASSWORD")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let alice = [("OVM_USER", "alice"), ("OVM_PASSWORD", "alice-password")];
    let pinned = format!("--tls-fingerprint {fp} pool create p1");
    let created = tls(&pinned, &alice);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(svc.ok("pool list").contains("p1"));
    // Without a user, with a wrong password, or with another certificate pinned: refused.
    assert_eq!(tls(&format!("--tls-fingerprint {fp} pool list"), &[]).status.code(), Some(10 + 17));
    let wrong = [("OVM_USER", "alice"), ("OVM_PASSWORD", "not-alices")];
    assert_eq!(tls(&format!("--tls-fingerprint {fp} pool list"), &wrong).status.code(), Some(10 + 17));
    let other = format!("--tls-fingerprint sha256:{} pool list", "ab".repeat(32));
    assert_eq!(tls(&other, &alice).status.code(), Some(10 + 17));
    // Without a fingerprint the address is refused before anything is sent.
    assert_eq!(tls("pool list", &alice).status.code(), Some(10 + 4));
    // A client certificate registered to a user logs in without a password; another one does not.
    let cert = svc.dir.join("bob.cert.json");
    let made = Command::new(OVM).arg("certificate").arg(&cert).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let bob_fp = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    // Asked again, the certificate is kept.
    let again = Command::new(OVM).arg("certificate").arg(&cert).output().unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), bob_fp);
    svc.ok(&format!("user add bob --role read-only --no-password --certificate {bob_fp}"));
    let with_cert = format!("--tls-fingerprint {fp} --client-certificate {} pool list", cert.display());
    let listed = tls(&with_cert, &[]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("p1"));
    // bob is read-only: creating a pool is refused.
    let create = format!("--tls-fingerprint {fp} --client-certificate {} pool create p2", cert.display());
    assert_eq!(tls(&create, &[]).status.code(), Some(10 + 17));
    let stranger = svc.dir.join("stranger.cert.json");
    assert!(Command::new(OVM).arg("certificate").arg(&stranger).status().unwrap().success());
    let unknown = format!("--tls-fingerprint {fp} --client-certificate {} pool list", stranger.display());
    assert_eq!(tls(&unknown, &[]).status.code(), Some(10 + 17));
    let (status, _) = svc.terminate();
    assert!(status.success());
    // The certificate is kept for the next start.
    assert_eq!(std::fs::read_to_string(svc.dir.join("m.tls.json")).unwrap(), kept);
}
