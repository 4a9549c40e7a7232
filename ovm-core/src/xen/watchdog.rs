//! The Xen watchdog of a server. A small daemon in dom0 (`ovm-agent watchdog`) arms a Xen
//! watchdog for dom0 (`SCHEDOP_watchdog`) and pets it every interval. If dom0 hangs, the daemon
//! stops petting; if the agent hangs, the daemon stops petting on purpose; either way Xen resets
//! the machine once the timeout passes. So a hung server fences itself: its cluster heartbeat
//! stops, the others declare it dead, and only then are its VMs restarted elsewhere.
//!
//! The agent is **hung** when its process still runs but no longer rewrites its alive file
//! (`ovm-agent serve --alive-file`, rewritten each second from the agent's runtime with its pid).
//! An agent that **died** (its process is gone) is not hung: the server and its VMs are fine, its
//! supervisor starts it again, and the watchdog goes on petting. An agent that recovers before the
//! timeout passes is petted again: a stall shorter than the timeout resets nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::privcmd::Privcmd;

/// How the watchdog runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// Xen resets the server this long after the last pet.
    pub timeout: Duration,
    /// How often it is petted (and the agent looked at).
    pub interval: Duration,
    /// The agent's alive file; `None` watches dom0 only.
    pub alive_file: Option<PathBuf>,
    /// How long the agent's alive file may go unwritten, while its process runs, before the agent
    /// is taken as hung.
    pub hang_after: Duration,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            timeout: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            alive_file: None,
            hang_after: Duration::from_secs(30),
        }
    }
}

impl WatchdogConfig {
    /// Refuses timings that would reset a healthy server or never reset a hung one: the interval
    /// between 1 s and a third of the timeout, the timeout at most an hour, the hang delay at
    /// least three of the agent's one-second writes.
    pub fn check(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err(format!("interval {:?}: at least 1 s", self.interval));
        }
        if self.timeout < self.interval * 3 || self.timeout > Duration::from_secs(3600) {
            return Err(format!(
                "timeout {:?}: at least three intervals ({:?}) and at most an hour",
                self.timeout,
                self.interval * 3
            ));
        }
        if self.hang_after < Duration::from_secs(3) {
            return Err(format!("hang delay {:?}: at least 3 s", self.hang_after));
        }
        Ok(())
    }
}

/// What the watchdog makes of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentHealth {
    /// It wrote its alive file recently.
    Alive,
    /// Its process is gone (or it never wrote the file): not a hang.
    Gone,
    /// Its process runs but has not written its alive file for `silent`.
    Hung {
        /// Its process.
        pid: u32,
        /// How long since its last write.
        silent: Duration,
    },
}

/// The agent's health from its alive file's `content` (its pid) and `age`, with `pid_runs`
/// telling whether a process runs. Pure.
pub fn agent_health(
    content: Option<&str>,
    age: Option<Duration>,
    pid_runs: impl Fn(u32) -> bool,
    hang_after: Duration,
) -> AgentHealth {
    let (Some(content), Some(age)) = (content, age) else { return AgentHealth::Gone };
    let Some(pid) = content.trim().parse::<u32>().ok().filter(|p| *p > 0) else {
        // Unreadable content: judged by its age alone.
        return if age <= hang_after { AgentHealth::Alive } else { AgentHealth::Gone };
    };
    if !pid_runs(pid) {
        return AgentHealth::Gone;
    }
    if age <= hang_after {
        AgentHealth::Alive
    } else {
        AgentHealth::Hung { pid, silent: age }
    }
}

/// The agent's health as its alive file `path` shows it now.
pub fn look_at_agent(path: &Path, hang_after: Duration) -> AgentHealth {
    let content = std::fs::read_to_string(path).ok();
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default());
    agent_health(content.as_deref(), age, |pid| Path::new(&format!("/proc/{pid}")).exists(), hang_after)
}

/// Write the agent's alive file: its pid, replacing the file at once (written aside, renamed).
pub fn write_alive_file(path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, path)
}

/// Arm the watchdog and pet it until `stop` is set, then disarm it. Returns an error if Xen's
/// watchdog cannot be armed or petted (the server then has no watchdog: the caller reports it).
pub fn run(cfg: &WatchdogConfig, stop: &AtomicBool, mut say: impl FnMut(&str)) -> Result<(), String> {
    cfg.check()?;
    let timeout = u32::try_from(cfg.timeout.as_secs()).map_err(|_| "timeout too long".to_owned())?;
    let xen = Privcmd::open().map_err(|e| format!("privcmd: {e}"))?;
    let id = xen.watchdog(0, timeout).map_err(|e| format!("arm the Xen watchdog: {e}"))?;
    say(&format!("Xen watchdog {id} armed: the server is reset {timeout} s after the last pet"));
    let mut was_hung = false;
    while !stop.load(Ordering::SeqCst) {
        let health = cfg.alive_file.as_deref().map(|p| look_at_agent(p, cfg.hang_after));
        match health {
            Some(AgentHealth::Hung { pid, silent }) => {
                if !was_hung {
                    say(&format!(
                        "the agent (process {pid}) is hung: silent for {silent:?}; not petting, Xen \
                         resets the server unless it recovers"
                    ));
                }
                was_hung = true;
            }
            _ => {
                if was_hung {
                    say("the agent recovered; petting again");
                }
                was_hung = false;
                xen.watchdog(id, timeout).map_err(|e| format!("pet the Xen watchdog: {e}"))?;
            }
        }
        let mut slept = Duration::ZERO;
        while slept < cfg.interval && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            slept += Duration::from_millis(200);
        }
    }
    xen.watchdog(id, 0).map_err(|e| format!("disarm the Xen watchdog: {e}"))?;
    say(&format!("Xen watchdog {id} disarmed"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANG: Duration = Duration::from_secs(20);

    #[test]
    fn a_silent_running_agent_is_hung_a_gone_one_is_not() {
        let s = Duration::from_secs;
        assert_eq!(agent_health(Some("42\n"), Some(s(1)), |_| true, HANG), AgentHealth::Alive);
        assert_eq!(
            agent_health(Some("42\n"), Some(s(21)), |p| p == 42, HANG),
            AgentHealth::Hung { pid: 42, silent: s(21) }
        );
        // Died: its process is gone, however old the file.
        assert_eq!(agent_health(Some("42\n"), Some(s(600)), |_| false, HANG), AgentHealth::Gone);
        assert_eq!(agent_health(None, None, |_| true, HANG), AgentHealth::Gone, "never started");
        // A file being replaced, or garbage: judged by its age.
        assert_eq!(agent_health(Some(""), Some(s(1)), |_| true, HANG), AgentHealth::Alive);
        assert_eq!(agent_health(Some("x"), Some(s(60)), |_| true, HANG), AgentHealth::Gone);
        assert_eq!(agent_health(Some("0"), Some(s(60)), |_| true, HANG), AgentHealth::Gone);
    }

    #[test]
    fn timings_are_checked() {
        let s = Duration::from_secs;
        assert!(WatchdogConfig::default().check().is_ok());
        let c = |timeout, interval, hang_after| {
            WatchdogConfig {
                timeout: s(timeout),
                interval: s(interval),
                alive_file: None,
                hang_after: s(hang_after),
            }
            .check()
        };
        assert!(c(10, 3, 10).is_ok());
        assert!(c(8, 3, 10).is_err(), "fewer than three pets per timeout");
        assert!(c(30, 0, 10).is_err());
        assert!(c(7200, 5, 10).is_err());
        assert!(c(30, 5, 2).is_err());
    }

    #[test]
    fn the_alive_file_holds_this_process_and_reads_alive() {
        let dir = std::env::temp_dir().join(format!("ovm-watchdog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("alive");
        assert_eq!(look_at_agent(&f, HANG), AgentHealth::Gone);
        write_alive_file(&f).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), format!("{}\n", std::process::id()));
        assert_eq!(look_at_agent(&f, HANG), AgentHealth::Alive);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
