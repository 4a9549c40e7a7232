//! External storage plug-ins: executables installed on a server that speak ovm's storage plug-in
//! protocol (version 1, `docs/storage-plugins.md`), as XAPI's SMAPIv3 scripts do.
//!
//! A plug-in is the file `<dir>/<name>`; `name` is `[a-z0-9][a-z0-9_-]{0,63}`. Nothing about it is
//! trusted: the directory and the file must belong to root (or to the user the agent runs as) and
//! be writable by nobody else, the file must be a regular file (not a symbolic link), and whatever
//! it answers is checked. One process per request: the request is one JSON object on its standard
//! input, the answer one JSON object on its standard output, at most [`MAX_ANSWER_BYTES`] long,
//! within a time limit per operation (the process group is killed at the limit, and when the
//! plug-in exits); its standard error is kept (the first [`STDERR_KEEP_BYTES`]) for messages.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::driver::storage::{check_abs_path, check_plugin_host, check_plugin_name, DiscoveredFileSystem};
use crate::model::ObjectKind;
use crate::{Error, Result};

/// The protocol version this side speaks.
pub const PROTOCOL: u64 = 1;

/// Where an agent looks for plug-ins unless told otherwise (`ovm-agent serve --storage-plugin-dir`).
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/ovm/storage-plugins";

/// The longest answer a plug-in may write (1 MiB); a longer one is a protocol error.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// How much of a plug-in's standard error is kept for error messages.
pub const STDERR_KEEP_BYTES: usize = 4096;

/// The environment's `PATH` a plug-in runs with (the rest of the environment is cleared).
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The file-system family's operations, with their time limits. `describe` does no work, but an
/// interpreter's cold start on a busy dom0 can take seconds.
fn default_limit(op: &str) -> Duration {
    match op {
        "describe" => Duration::from_secs(30),
        "discover" => Duration::from_secs(120),
        _ => Duration::from_secs(60),
    }
}

/// What a plug-in says of itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginDescription {
    /// Its name.
    pub name: String,
    /// Its version (free text).
    pub version: String,
    /// The family of operations it implements (`file_system`).
    pub family: String,
    /// The protocol versions it speaks.
    pub protocols: Vec<u64>,
}

/// One file system a plug-in's `discover` lists.
#[derive(Debug, Clone, Deserialize)]
struct Offered {
    name: String,
    path: String,
    size_bytes: u64,
    free_bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Answer {
    protocol: Value,
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<AnswerError>,
}

#[derive(Debug, Deserialize)]
struct AnswerError {
    kind: String,
    #[serde(default)]
    message: String,
}

/// Runs the external plug-ins installed in one directory.
#[derive(Debug, Clone)]
pub struct PluginRunner {
    dir: PathBuf,
    limit: Option<Duration>,
}

impl Default for PluginRunner {
    fn default() -> Self {
        PluginRunner::new(DEFAULT_PLUGIN_DIR)
    }
}

/// A plug-in broke the protocol.
fn broke(name: &str, op: &str, what: impl std::fmt::Display) -> Error {
    Error::backend(format!("storage plug-in {name}"), format!("{op}: broke protocol {PROTOCOL}: {what}"))
}

/// Text for a message: at most `n` bytes of `b`, lossily decoded and trimmed.
fn excerpt(b: &[u8], n: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(n)]).trim().to_owned()
}

fn secure(what: &str, p: &Path, meta: &std::fs::Metadata) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(Error::PermissionDenied {
            reason: format!("{what} {} belongs to user {}, not root", p.display(), meta.uid()),
        });
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(Error::PermissionDenied {
            reason: format!("{what} {} is writable by group or others", p.display()),
        });
    }
    Ok(())
}

impl PluginRunner {
    /// The plug-ins of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PluginRunner { dir: dir.into(), limit: None }
    }

    /// The same runner with one time limit for every operation (tests).
    pub fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The plug-in directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The executable of plug-in `name`, checked: a plain name, a regular file belonging to root
    /// (or to this process's user), executable, in a directory that is neither, and writable by
    /// nobody else.
    pub fn executable(&self, name: &str) -> Result<PathBuf> {
        check_plugin_name(name)?;
        let dir_meta = std::fs::metadata(&self.dir).map_err(|e| Error::Unsupported {
            what: format!("storage plug-in {name}: plug-in directory {}: {e}", self.dir.display()),
        })?;
        secure("plug-in directory", &self.dir, &dir_meta)?;
        let path = self.dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Unsupported {
                    what: format!("storage plug-in {name}: not installed in {}", self.dir.display()),
                })
            }
            Err(e) => return Err(Error::backend(format!("storage plug-in {name}"), format!("stat: {e}"))),
        };
        if !meta.file_type().is_file() {
            return Err(Error::PermissionDenied {
                reason: format!("storage plug-in {} is not a regular file", path.display()),
            });
        }
        secure("storage plug-in", &path, &meta)?;
        if meta.permissions().mode() & 0o100 == 0 {
            return Err(Error::PermissionDenied {
                reason: format!("storage plug-in {} is not executable", path.display()),
            });
        }
        Ok(path)
    }

    /// Run operation `op` of plug-in `name` with `args`; its `result`, or the typed error it
    /// answered (`server` names the file server in errors the storage causes).
    pub fn call(&self, name: &str, op: &str, args: Value, server: &str) -> Result<Value> {
        let exe = self.executable(name)?;
        let limit = self.limit.unwrap_or_else(|| default_limit(op));
        let request = json!({ "protocol": PROTOCOL, "op": op, "args": args }).to_string();
        let (status, out, err) = run_plugin(name, op, &exe, request.as_bytes(), limit)?;
        let answer: Answer = match serde_json::from_slice(&out) {
            Ok(a) => a,
            Err(_) if !status.success() && out.iter().all(u8::is_ascii_whitespace) => {
                return Err(Error::backend(
                    format!("storage plug-in {name}"),
                    format!(
                        "{op}: exited with {status} without an answer: {}",
                        excerpt(&err, STDERR_KEEP_BYTES)
                    ),
                ));
            }
            Err(e) => {
                return Err(broke(
                    name,
                    op,
                    format!("the answer is not a JSON object ({e}): {}", excerpt(&out, 200)),
                ))
            }
        };
        if answer.protocol.as_u64() != Some(PROTOCOL) {
            return Err(Error::Unsupported {
                what: format!(
                    "storage plug-in {name} answered {op} in protocol {}; this ovm speaks {PROTOCOL}",
                    answer.protocol
                ),
            });
        }
        match (answer.ok, answer.result, answer.error) {
            (true, _, _) if !status.success() => Err(broke(
                name,
                op,
                format!("an answer that succeeded, from a process that exited with {status}"),
            )),
            (true, Some(result), _) => Ok(result),
            (true, None, _) => Err(broke(name, op, "an answer that succeeded without a result")),
            (false, _, Some(e)) => Err(answered_error(name, op, server, e, &err)),
            (false, _, None) => Err(broke(name, op, "an answer that failed without an error")),
        }
    }

    /// `describe`: what the plug-in says of itself, checked (the file-system family, protocol 1).
    pub fn describe(&self, name: &str) -> Result<PluginDescription> {
        let v = self.call(name, "describe", json!({}), name)?;
        let d: PluginDescription =
            serde_json::from_value(v).map_err(|e| broke(name, "describe", format!("the result: {e}")))?;
        if d.family != "file_system" {
            return Err(Error::Unsupported {
                what: format!("storage plug-in {name} is of the {:?} family, not file_system", d.family),
            });
        }
        if !d.protocols.contains(&PROTOCOL) {
            return Err(Error::Unsupported {
                what: format!("storage plug-in {name} speaks protocols {:?}, not {PROTOCOL}", d.protocols),
            });
        }
        Ok(d)
    }

    /// `discover`: the file systems the file server `host` offers, checked (plain absolute paths,
    /// once each; free space no more than the size). The plug-in is asked to `describe` itself
    /// first: one of another family, or that does not speak this protocol, is refused.
    pub fn discover(&self, name: &str, host: &str) -> Result<Vec<DiscoveredFileSystem>> {
        check_plugin_host(host)?;
        self.describe(name)?;
        let v = self.call(name, "discover", json!({ "host": host }), host)?;
        let offered: Vec<Offered> =
            serde_json::from_value(v).map_err(|e| broke(name, "discover", format!("the result: {e}")))?;
        let mut found: Vec<DiscoveredFileSystem> = Vec::new();
        for f in offered {
            if f.name.trim().is_empty() || f.name.len() > 256 || f.name.chars().any(char::is_control) {
                return Err(broke(name, "discover", format!("the file system name {:?}", f.name)));
            }
            check_abs_path("path", &f.path).map_err(|e| broke(name, "discover", e))?;
            if f.free_bytes > f.size_bytes {
                return Err(broke(name, "discover", format!("{} has more free bytes than bytes", f.path)));
            }
            if found.iter().any(|x| x.path == f.path) {
                return Err(broke(name, "discover", format!("{} is listed twice", f.path)));
            }
            found.push(DiscoveredFileSystem {
                path: f.path,
                total_bytes: f.size_bytes,
                free_bytes: f.free_bytes,
                repository: None,
            });
        }
        Ok(found)
    }

    /// `mount`: the plug-in mounts file system `path` of `host` at `mount_point` (the caller checks
    /// the mount table afterwards).
    pub fn mount(&self, name: &str, host: &str, path: &str, mount_point: &str) -> Result<()> {
        check_plugin_host(host)?;
        check_abs_path("path", path)?;
        check_abs_path("mount_point", mount_point)?;
        let args = json!({ "host": host, "path": path, "mount_point": mount_point });
        let v = self.call(name, "mount", args, host)?;
        if !v.is_object() {
            return Err(broke(name, "mount", "the result is not an object"));
        }
        Ok(())
    }

    /// `unmount`: the plug-in unmounts what it mounted at `mount_point`.
    pub fn unmount(&self, name: &str, mount_point: &str) -> Result<()> {
        check_abs_path("mount_point", mount_point)?;
        let v = self.call(name, "unmount", json!({ "mount_point": mount_point }), name)?;
        if !v.is_object() {
            return Err(broke(name, "unmount", "the result is not an object"));
        }
        Ok(())
    }
}

/// The error a plug-in answered, as ovm's: `invalid` → [`Error::InvalidArgument`], `not_found` →
/// [`Error::NotFound`] (a file system), `unavailable` and `failed` (and kinds this side does not
/// know) → [`Error::Backend`].
fn answered_error(name: &str, op: &str, server: &str, e: AnswerError, stderr: &[u8]) -> Error {
    let mut message: String = e.message.chars().filter(|c| !c.is_control()).take(2000).collect();
    if message.trim().is_empty() {
        message = excerpt(stderr, STDERR_KEEP_BYTES);
    }
    match e.kind.as_str() {
        "invalid" => Error::invalid(format!("storage plug-in {name} {op}"), message),
        "not_found" => Error::NotFound { kind: ObjectKind::FileSystem, id: message },
        "unavailable" => {
            Error::backend(server, format!("storage plug-in {name} {op}: unavailable: {message}"))
        }
        _ => Error::backend(server, format!("storage plug-in {name} {op}: failed: {message}")),
    }
}

/// Run the plug-in: the request on its standard input; its exit status, standard output and the
/// kept part of its standard error.
fn run_plugin(
    name: &str,
    op: &str,
    exe: &Path,
    request: &[u8],
    limit: Duration,
) -> Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
    let who = || format!("storage plug-in {name}");
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env("PATH", PLUGIN_PATH)
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            // A file just installed may still be open for writing in a process being forked.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 10 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::backend(who(), format!("{op}: run {}: {e}", exe.display()))),
        }
    };
    let pid = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: kill has no memory preconditions; the group is the child's own (process_group(0)).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    };
    let oversize = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    if let Some(mut out) = child.stdout.take() {
        let (tx, oversize) = (tx.clone(), oversize.clone());
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut out).take(MAX_ANSWER_BYTES as u64 + 1).read_to_end(&mut buf);
            if buf.len() > MAX_ANSWER_BYTES {
                oversize.store(true, Ordering::SeqCst);
            }
            let _ = tx.send((true, buf));
        });
    }
    if let Some(mut err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let (mut kept, mut chunk) = (Vec::new(), [0u8; 4096]);
            loop {
                match err.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = STDERR_KEEP_BYTES.saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..n.min(room)]);
                    }
                }
            }
            let _ = tx.send((false, kept));
        });
    }
    drop(tx);
    if let Some(mut input) = child.stdin.take() {
        // A plug-in that does not read its request gets EPIPE here, not a signal: not our concern.
        let _ = input.write_all(request);
    }
    let t0 = Instant::now();
    loop {
        // Wait without reaping, so the process group's id stays the plug-in's until it is killed.
        // SAFETY: `info` is writable memory for one siginfo_t; waitid fills it or leaves it zeroed.
        let exited = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc == 0 && info.si_pid() == pid
        };
        if exited {
            break;
        }
        if oversize.load(Ordering::SeqCst) {
            kill_group();
            let _ = child.wait();
            return Err(broke(name, op, format!("an answer longer than {MAX_ANSWER_BYTES} bytes")));
        }
        if t0.elapsed() > limit {
            kill_group();
            let _ = child.wait();
            return Err(Error::Timeout {
                what: format!("storage plug-in {name} {op}"),
                millis: limit.as_millis() as u64,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // What the plug-in left running in its group goes with it (a plug-in leaves nothing behind).
    kill_group();
    let status = child.wait().map_err(|e| Error::backend(who(), format!("{op}: wait: {e}")))?;
    let (mut out, mut err) = (None, None);
    while out.is_none() || err.is_none() {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok((true, b)) => out = Some(b),
            Ok((false, b)) => err = Some(b),
            // A process that left the group holds a pipe open: what was read is taken.
            Err(_) => break,
        }
    }
    let out = out.ok_or_else(|| broke(name, op, "its standard output stayed open after it exited"))?;
    if out.len() > MAX_ANSWER_BYTES {
        return Err(broke(name, op, format!("an answer longer than {MAX_ANSWER_BYTES} bytes")));
    }
    Ok((status, out, err.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plug-in directory of test plug-ins (shell scripts), owned by this user, mode 0755.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("ovm-plugins-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            Dir(d)
        }

        fn script(&self, name: &str, body: &str) -> &Dir {
            let p = self.0.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            self
        }

        /// A plug-in of the file-system family: it describes itself, and answers the rest with
        /// `body`.
        fn fs_script(&self, name: &str, body: &str) -> &Dir {
            let describe = r#"{"protocol":1,"ok":true,"result":{"name":"t","version":"0","family":"file_system","protocols":[1]}}"#;
            self.script(
                name,
                &format!("req=$(cat); case \"$req\" in *'\"op\":\"describe\"'*) printf '%s' '{describe}'; exit 0;; esac\n{body}"),
            )
        }

        fn runner(&self) -> PluginRunner {
            PluginRunner::new(&self.0).with_limit(Duration::from_secs(10))
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn answer(json: &str) -> String {
        format!("cat > /dev/null; printf '%s' '{json}'")
    }

    #[test]
    fn a_good_answer_is_checked_and_converted() {
        let d = Dir::new("good");
        d.fs_script(
            "good",
            &answer(
                r#"{"protocol":1,"ok":true,"result":[{"name":"a","path":"/e/a","size_bytes":100,"free_bytes":40},
                {"name":"b","path":"/e/b","size_bytes":7,"free_bytes":7,"extra":"ignored"}]}"#,
            ),
        );
        let found = d.runner().discover("good", "nas1:/e").unwrap();
        assert_eq!(
            found,
            vec![
                DiscoveredFileSystem {
                    path: "/e/a".into(),
                    total_bytes: 100,
                    free_bytes: 40,
                    repository: None
                },
                DiscoveredFileSystem { path: "/e/b".into(), total_bytes: 7, free_bytes: 7, repository: None },
            ]
        );
        // The request the plug-in reads: one JSON object on its standard input.
        d.script("echo", r#"req=$(cat); printf '{"protocol":1,"ok":true,"result":%s}' "$req""#);
        let v =
            d.runner().call("echo", "mount", json!({"host": "h", "path": "/p", "mount_point": "/m"}), "h");
        assert_eq!(
            v.unwrap(),
            json!({"protocol": 1, "op": "mount", "args": {"host": "h", "path": "/p", "mount_point": "/m"}})
        );
        d.script("empty-env", r#"cat >/dev/null; printf '{"protocol":1,"ok":true,"result":"%s"}' "$HOME""#);
        assert_eq!(d.runner().call("empty-env", "describe", json!({}), "x").unwrap(), json!(""));
    }

    #[test]
    fn answers_that_break_the_protocol_are_backend_errors() {
        let d = Dir::new("bad");
        let cases = [
            ("not-json", "cat >/dev/null; echo 'mounted it, all fine'", "not a JSON object"),
            ("no-result", &answer(r#"{"protocol":1,"ok":true}"#) as &str, "without a result"),
            ("no-error", &answer(r#"{"protocol":1,"ok":false}"#), "without an error"),
            (
                "ok-but-failed",
                &format!("{}; exit 3", answer(r#"{"protocol":1,"ok":true,"result":{}}"#)),
                "exited with",
            ),
            ("silent-failure", "cat >/dev/null; echo 'disk on fire' >&2; exit 4", "disk on fire"),
            (
                "bad-path",
                &answer(
                    r#"{"protocol":1,"ok":true,"result":[{"name":"a","path":"/e/../etc","size_bytes":1,"free_bytes":1}]}"#,
                ),
                "not a plain absolute path",
            ),
            (
                "bad-size",
                &answer(
                    r#"{"protocol":1,"ok":true,"result":[{"name":"a","path":"/e/a","size_bytes":"10","free_bytes":1}]}"#,
                ),
                "the result",
            ),
            (
                "more-free",
                &answer(
                    r#"{"protocol":1,"ok":true,"result":[{"name":"a","path":"/e/a","size_bytes":1,"free_bytes":2}]}"#,
                ),
                "more free bytes",
            ),
        ];
        for (name, body, says) in cases {
            d.fs_script(name, body);
            match d.runner().discover(name, "nas1:/e") {
                Err(Error::Backend { message, .. }) => assert!(message.contains(says), "{name}: {message}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn another_protocol_is_unsupported() {
        let d = Dir::new("proto");
        d.script("v2", &answer(r#"{"protocol":2,"ok":true,"result":{}}"#));
        d.script("none", &answer(r#"{"ok":true,"result":{}}"#));
        assert!(
            matches!(d.runner().unmount("v2", "/m"), Err(Error::Unsupported { what }) if what.contains("protocol 2"))
        );
        assert!(d.runner().unmount("none", "/m").is_err());
        d.script("nfs4-family", &answer(r#"{"protocol":1,"ok":true,"result":{"name":"x","version":"1","family":"block","protocols":[1]}}"#));
        assert!(matches!(d.runner().describe("nfs4-family"), Err(Error::Unsupported { .. })));
        // Discovery asks first.
        assert!(matches!(d.runner().discover("nfs4-family", "nas1:/e"), Err(Error::Unsupported { .. })));
    }

    #[test]
    fn error_answers_are_typed() {
        let d = Dir::new("errors");
        let err = |kind: &str| {
            format!(
                "{}; exit 1",
                answer(&format!(
                    r#"{{"protocol":1,"ok":false,"error":{{"kind":"{kind}","message":"it said {kind}"}}}}"#
                ))
            )
        };
        for kind in ["invalid", "not_found", "unavailable", "failed", "something-new"] {
            d.script(&kind.replace('_', "-"), &err(kind));
        }
        let r = d.runner();
        let mount = |name: &str| r.mount(name, "nas1:/e", "/e/a", "/OVS/Repositories/r");
        assert!(
            matches!(mount("invalid"), Err(Error::InvalidArgument { reason, .. }) if reason == "it said invalid")
        );
        assert!(matches!(
            mount("not-found"),
            Err(Error::NotFound { kind: ObjectKind::FileSystem, id }) if id == "it said not_found"
        ));
        assert!(matches!(
            mount("unavailable"),
            Err(Error::Backend { server, message }) if server == "nas1:/e" && message.contains("unavailable: it said")
        ));
        assert!(
            matches!(mount("failed"), Err(Error::Backend { message, .. }) if message.contains("failed: it said failed"))
        );
        assert!(
            matches!(mount("something-new"), Err(Error::Backend { message, .. }) if message.contains("failed:"))
        );
    }

    #[test]
    fn a_plugin_that_takes_too_long_is_killed_with_its_children() {
        let d = Dir::new("slow");
        let marker = d.0.join("child-lived");
        d.script("slow", &format!("(sleep 2; touch {}) & sleep 30", marker.display()));
        let t0 = Instant::now();
        let r = d.runner().with_limit(Duration::from_millis(300)).describe("slow");
        assert!(matches!(r, Err(Error::Timeout { millis: 300, .. })), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "the process group is killed");
    }

    #[test]
    fn an_oversize_answer_is_refused() {
        let d = Dir::new("big");
        d.script("big", "cat >/dev/null; printf '{\"protocol\":1,\"ok\":true,\"result\":\"'; yes x | head -c 2000000; printf '\"}'");
        d.script("endless", "cat >/dev/null; yes");
        for name in ["big", "endless"] {
            let t0 = Instant::now();
            match d.runner().describe(name) {
                Err(Error::Backend { message, .. }) => assert!(message.contains("longer than"), "{message}"),
                other => panic!("{name}: {other:?}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "{name}");
        }
    }

    #[test]
    fn only_plain_names_of_safe_files_run() {
        let d = Dir::new("names");
        d.script("fine", &answer(r#"{"protocol":1,"ok":true,"result":{}}"#));
        let r = d.runner();
        r.unmount("fine", "/m").unwrap();
        for bad in ["../fine", "a/b", "/bin/sh", "..", "Fine", "-x", "", &"a".repeat(65)] {
            assert!(matches!(r.unmount(bad, "/m"), Err(Error::InvalidArgument { .. })), "{bad:?}");
        }
        assert!(matches!(r.unmount("missing", "/m"), Err(Error::Unsupported { .. })));
        // Group- or other-writable: refused, and not run.
        let ran = d.0.join("ran");
        d.script(
            "writable",
            &format!("touch {}; {}", ran.display(), answer(r#"{"protocol":1,"ok":true,"result":{}}"#)),
        );
        for mode in [0o775, 0o757] {
            std::fs::set_permissions(d.0.join("writable"), std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(r.unmount("writable", "/m"), Err(Error::PermissionDenied { .. })), "{mode:o}");
        }
        assert!(!ran.exists());
        // A symbolic link, a directory, a file that is not executable.
        std::os::unix::fs::symlink(d.0.join("fine"), d.0.join("link")).unwrap();
        std::fs::create_dir(d.0.join("dir")).unwrap();
        d.script("noexec", "exit 0");
        std::fs::set_permissions(d.0.join("noexec"), std::fs::Permissions::from_mode(0o644)).unwrap();
        for name in ["link", "dir", "noexec"] {
            assert!(matches!(r.unmount(name, "/m"), Err(Error::PermissionDenied { .. })), "{name}");
        }
        // A directory others may write to: nothing in it runs.
        std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(r.unmount("fine", "/m"), Err(Error::PermissionDenied { .. })));
        assert!(matches!(
            PluginRunner::new("/nonexistent/ovm-plugins").unmount("fine", "/m"),
            Err(Error::Unsupported { .. })
        ));
    }

    /// The example plug-in of the repository, run through the runner (its refusals need no NAS).
    #[test]
    fn the_example_plugin_describes_itself_and_refuses_bad_input() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../bindings-examples/storage-plugins/ovm-example-nfs-shares");
        let d = Dir::new("example");
        let name = "ovm-example-nfs-shares";
        std::fs::copy(&src, d.0.join(name)).unwrap();
        std::fs::set_permissions(d.0.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = d.runner();
        let desc = r.describe(name).unwrap();
        assert_eq!(
            (desc.name.as_str(), desc.family.as_str(), desc.protocols.clone()),
            (name, "file_system", vec![1])
        );
        let refused = [
            ("nas1:/export/shares", "/export/shares/../etc", "/OVS/Repositories/r"),
            ("nas1:/export/shares", "/export/other/vm1", "/OVS/Repositories/r"),
            ("nas1:/export/shares", "/export/shares/vm1", "/OVS/Repositories/../r"),
            ("nas1", "/export/shares/vm1", "/OVS/Repositories/r"),
            ("nas1:/export/../shares", "/export/shares/vm1", "/OVS/Repositories/r"),
            ("nas1;reboot:/export", "/export/vm1", "/OVS/Repositories/r"),
        ];
        for (host, path, mount_point) in refused {
            // The runner passes what it checks itself (plain paths) only to the plug-in; the
            // plug-in refuses the rest.
            let args = json!({ "host": host, "path": path, "mount_point": mount_point });
            match r.call(name, "mount", args, host) {
                Err(Error::InvalidArgument { .. }) => {}
                other => panic!("{host} {path} {mount_point}: {other:?}"),
            }
        }
        assert!(matches!(r.discover(name, "nas1:relative"), Err(Error::InvalidArgument { .. })));
        assert!(matches!(r.call(name, "format", json!({}), name), Err(Error::InvalidArgument { .. })));
    }
}
