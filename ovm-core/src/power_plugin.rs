//! Out-of-band power control by an executable plug-in: the [`PowerController`] that C and Python
//! applications register by path ([`crate::Manager::register_power_controller`] with an
//! [`ExecPowerController`]), and that wraps `ipmitool`, a Redfish client or a PDU's command line.
//!
//! The protocol (version 1) is the one fence agents use, in its simplest form. The manager runs
//!
//! ```text
//! PLUGIN on|off|status ADDRESS
//! ```
//!
//! with `ADDRESS` the server's management controller ([`crate::model::OutOfBand::address`], checked:
//! never an option), standard input empty and `OVM_POWER_CONTROLLER` set to the controller's name.
//! Exit status 0 is success; otherwise the last lines of its standard error say why. For `status`,
//! the first word of its standard output is `on` or `off`. `off` cuts the power at once. Each run
//! is limited to [`ExecPowerController::TIMEOUT`]; credentials are the plug-in's own business
//! (a file only it reads), never arguments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::driver::{ChassisPower, PowerController};
use crate::exec::{run_limited, ExecError};
use crate::model::OutOfBand;
use crate::{Error, Result};

/// An executable power plug-in registered under a name.
#[derive(Debug, Clone)]
pub struct ExecPowerController {
    name: String,
    path: PathBuf,
    timeout: Duration,
}

impl ExecPowerController {
    /// How long one run may take unless set otherwise (a BMC's power command answers in seconds).
    pub const TIMEOUT: Duration = Duration::from_secs(60);
    /// At most this much of a plug-in's output is read.
    const OUTPUT_CAP: u64 = 64 * 1024;

    /// The plug-in at `path` (absolute, an executable regular file) as the controller `name`.
    pub fn new(name: &str, path: impl AsRef<Path>) -> Result<ExecPowerController> {
        OutOfBand { controller: name.to_owned(), address: "x".into() }.check()?;
        let path = path.as_ref();
        if !path.is_absolute() {
            return Err(Error::invalid("path", format!("{} is not an absolute path", path.display())));
        }
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::invalid("path", format!("power plug-in {}: {e}", path.display())))?;
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(Error::invalid("path", format!("{} is not an executable file", path.display())));
        }
        Ok(ExecPowerController { name: name.to_owned(), path: path.to_owned(), timeout: Self::TIMEOUT })
    }

    /// The same plug-in with another time limit per run.
    pub fn with_timeout(mut self, timeout: Duration) -> ExecPowerController {
        self.timeout = timeout;
        self
    }

    fn run(&self, op: &str, target: &OutOfBand) -> Result<String> {
        target.check()?;
        let who = format!("power controller {}", self.name);
        let mut cmd = Command::new(&self.path);
        cmd.arg(op).arg(&target.address).env("OVM_POWER_CONTROLLER", &self.name);
        let done = run_limited(cmd, self.timeout, Self::OUTPUT_CAP).map_err(|e| match e {
            ExecError::Spawn(e) => Error::backend(&who, format!("run {}: {e}", self.path.display())),
            ExecError::Wait(e) => Error::backend(&who, format!("wait for {}: {e}", self.path.display())),
            ExecError::TimedOut => Error::Timeout {
                what: format!("{who}: {op} {}", target.address),
                millis: self.timeout.as_millis() as u64,
            },
        })?;
        if !done.status.success() {
            let why: Vec<&str> = done.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let why = why[why.len().saturating_sub(3)..].join(" / ");
            let why: String = why.chars().take(1000).collect();
            return Err(Error::backend(
                &who,
                format!("{op} {} failed ({}): {why}", target.address, done.status),
            ));
        }
        Ok(done.stdout)
    }
}

impl PowerController for ExecPowerController {
    fn name(&self) -> &str {
        &self.name
    }

    fn power_on(&self, target: &OutOfBand) -> Result<()> {
        self.run("on", target).map(|_| ())
    }

    fn power_off(&self, target: &OutOfBand) -> Result<()> {
        self.run("off", target).map(|_| ())
    }

    fn power_state(&self, target: &OutOfBand) -> Result<ChassisPower> {
        let out = self.run("status", target)?;
        match out.split_whitespace().next() {
            Some("on") => Ok(ChassisPower::On),
            Some("off") => Ok(ChassisPower::Off),
            other => Err(Error::backend(
                format!("power controller {}", self.name),
                format!(
                    "status {} answered {:?}, not \"on\" or \"off\"",
                    target.address,
                    other.unwrap_or("")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A plug-in script in a fresh directory; returns the directory and the script's path.
    fn plugin(body: &str) -> (Scratch, PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ovm-power-plugin-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bmc");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (Scratch(dir), path)
    }

    fn target(address: &str) -> OutOfBand {
        OutOfBand { controller: "bmc".into(), address: address.into() }
    }

    #[test]
    fn a_plugin_powers_on_and_off_and_reports_the_state_it_keeps() {
        // The chassis is a file: the plug-in writes "on" or "off" in it, per address.
        let (dir, path) = plugin(
            r#"state="$(dirname "$0")/$2"
[ "$OVM_POWER_CONTROLLER" = bmc ] || { echo "bad controller $OVM_POWER_CONTROLLER" >&2; exit 3; }
case "$1" in
  on|off) echo "$1" > "$state" ;;
  status) cat "$state" 2>/dev/null || echo off ;;
  *) echo "unknown operation $1" >&2; exit 2 ;;
esac"#,
        );
        let c = ExecPowerController::new("bmc", &path).unwrap();
        let t = target("10.0.0.7");
        assert_eq!(c.power_state(&t).unwrap(), ChassisPower::Off);
        c.power_on(&t).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("10.0.0.7")).unwrap().trim(), "on");
        assert_eq!(c.power_state(&t).unwrap(), ChassisPower::On);
        c.power_off(&t).unwrap();
        assert_eq!(c.power_state(&t).unwrap(), ChassisPower::Off);
        assert_eq!(c.name(), "bmc");
    }

    #[test]
    fn failures_bad_answers_and_hangs_are_typed_errors() {
        let (_d, failing) = plugin("echo 'Error: Unable to establish IPMI v2 / RMCP+ session' >&2; exit 1");
        let c = ExecPowerController::new("bmc", &failing).unwrap();
        let e = c.power_on(&target("bmc1")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.to_string().contains("Unable to establish IPMI"), "{e}");

        let (_d, babbling) = plugin("echo 'Chassis Power is unknown'");
        let c = ExecPowerController::new("bmc", &babbling).unwrap();
        let e = c.power_state(&target("bmc1")).unwrap_err();
        assert!(e.to_string().contains("not \"on\" or \"off\""), "{e}");

        let (_d, hanging) = plugin("sleep 30");
        let c = ExecPowerController::new("bmc", &hanging).unwrap().with_timeout(Duration::from_millis(300));
        let t0 = std::time::Instant::now();
        let e = c.power_off(&target("bmc1")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10), "the hung plug-in was killed");

        // An address that would be an option never reaches the plug-in.
        let e = c.power_on(&target("-H evil")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn only_an_absolute_executable_file_is_a_plugin() {
        let (dir, path) = plugin("exit 0");
        assert_eq!(ExecPowerController::new("bmc", "bmc").unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            ExecPowerController::new("bmc", dir.path()).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            ExecPowerController::new("bmc", dir.path().join("missing")).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(ExecPowerController::new("bmc", &path).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            ExecPowerController::new("Bad Name", "/bin/true").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
