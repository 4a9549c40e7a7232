//! `ovm serve`: a manager on a database, its API on a Unix socket, until SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::remote::{Service, ServiceOptions};
use crate::{Error, Manager, Result};

/// `ovm serve` options.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The Unix socket to serve on.
    #[arg(long, value_name = "PATH", default_value = "/run/ovm/manager.sock")]
    pub socket: PathBuf,
    /// The socket file's permissions, octal (0600: the service's user only; 0660: its group too).
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,
    /// How long SIGTERM waits for running jobs before the manager is closed anyway, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub shutdown_timeout: u64,
    /// A settings file (JSON, e.g. {"log_level": "info"}), read at start and again on SIGHUP.
    #[arg(long, value_name = "PATH")]
    pub settings: Option<PathBuf>,
    /// Also serve over TLS on ADDRESS:PORT (clients log in as users: password or a registered
    /// client certificate).
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub listen: Option<String>,
    /// The TLS certificate and key (JSON, mode 0600): generated there the first time (default: the
    /// database's path with the extension tls.json).
    #[arg(long, value_name = "PATH", requires = "listen")]
    pub tls_identity: Option<PathBuf>,
    /// For tests and demonstrations: an NFS export of the simulated world (`sim://` servers),
    /// HOST:/EXPORT, 1 TiB; may be repeated.
    #[arg(long, value_name = "HOST:/EXPORT", value_parser = parse_sim_export)]
    pub sim_nfs_export: Vec<(String, String)>,
}

fn parse_sim_export(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once(':') {
        Some((host, export)) if !host.is_empty() && export.starts_with('/') => {
            Ok((host.to_owned(), export.to_owned()))
        }
        _ => Err(format!("{s:?} is not HOST:/EXPORT")),
    }
}

fn parse_mode(s: &str) -> std::result::Result<u32, String> {
    let m =
        u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|e| format!("not an octal mode: {e}"))?;
    if m & !0o777 != 0 || m & 0o600 != 0o600 {
        return Err("the mode must be within 0777 and let the owner read and write (0600 at least)".into());
    }
    Ok(m)
}

/// What a settings file holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// error, warn, info, debug or trace (default info).
    #[serde(default = "default_level")]
    log_level: String,
}

fn default_level() -> String {
    "info".into()
}

fn read_settings(path: Option<&Path>) -> Result<log::LevelFilter> {
    let settings = match path {
        None => Settings { log_level: default_level() },
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Error::invalid("settings", format!("cannot read {}: {e}", p.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::invalid("settings", format!("{}: {e}", p.display())))?
        }
    };
    settings
        .log_level
        .parse()
        .map_err(|_| Error::invalid("log_level", format!("{:?} is not a log level", settings.log_level)))
}

/// Messages on stderr (the journal, under systemd), at the level the settings say.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("{} {}: {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

static TERMINATE: AtomicBool = AtomicBool::new(false);
static RELOADS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

extern "C" fn on_hangup(_: libc::c_int) {
    RELOADS.fetch_add(1, Ordering::SeqCst);
}

fn install_handlers() {
    let term = on_terminate as extern "C" fn(libc::c_int) as libc::sighandler_t;
    let hup = on_hangup as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handlers only store to atomics, which is async-signal-safe; `signal` is called
    // with valid signal numbers and handler addresses.
    unsafe {
        libc::signal(libc::SIGTERM, term);
        libc::signal(libc::SIGINT, term);
        libc::signal(libc::SIGHUP, hup);
    }
}

/// Runs the service until SIGTERM or SIGINT.
pub fn run(args: &ServeArgs, db: Option<&Path>, key_file: Option<&Path>) -> Result<()> {
    let db = db.ok_or_else(|| Error::invalid("db", "ovm serve needs --db PATH"))?;
    let level = read_settings(args.settings.as_deref())?;
    let _ = log::set_logger(&StderrLog);
    log::set_max_level(level);
    install_handlers();
    let mut builder = Manager::builder().database(crate::manager::DatabaseLocation::File(db.to_path_buf()));
    if let Some(key) = super::users::sealing_key(key_file)? {
        builder = builder.sealing_key(key);
    }
    let mgr = builder.open()?;
    for (host, export) in &args.sim_nfs_export {
        mgr.sim().add_nfs_export(host, export, 1 << 40);
    }
    let tls = match &args.listen {
        None => None,
        Some(address) => {
            let path = args.tls_identity.clone().unwrap_or_else(|| db.with_extension("tls.json"));
            match super::users::tls_identity(&path, &format!("ovm-service-{}", mgr.id())) {
                Ok(identity) => Some(crate::remote::TlsListen { address: address.clone(), identity }),
                Err(e) => {
                    mgr.close(Duration::from_secs(args.shutdown_timeout))?;
                    return Err(e);
                }
            }
        }
    };
    let fingerprint = tls.as_ref().map(|t| t.identity.fingerprint()).transpose()?;
    let opts = ServiceOptions { mode: args.mode, tls, ..ServiceOptions::default() };
    let service = match Service::bind(Arc::new(mgr.clone()), &args.socket, opts) {
        Ok(s) => s,
        Err(e) => {
            mgr.close(Duration::from_secs(args.shutdown_timeout))?;
            return Err(e);
        }
    };
    eprintln!("ovm: manager {} serving {} on {}", mgr.id(), db.display(), args.socket.display());
    if let (Some(address), Some(fp)) = (service.tls_address(), fingerprint) {
        eprintln!("ovm: and over TLS on {address}, certificate {fp}");
    }
    let mut reloads = RELOADS.load(Ordering::SeqCst);
    while !TERMINATE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let now = RELOADS.load(Ordering::SeqCst);
        if now != reloads {
            reloads = now;
            match read_settings(args.settings.as_deref()) {
                Ok(level) => {
                    log::set_max_level(level);
                    eprintln!("ovm: settings reloaded (log level {level})");
                }
                Err(e) => eprintln!("ovm: settings not reloaded, the old ones stay: {e}"),
            }
        }
    }
    eprintln!("ovm: stopping: no new connections; waiting for running jobs");
    service.shutdown();
    mgr.close(Duration::from_secs(args.shutdown_timeout))?;
    eprintln!("ovm: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_keep_the_owner_in() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert!(parse_mode("0066").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("9").is_err());
    }

    #[test]
    fn settings_are_checked() {
        let dir = std::env::temp_dir().join(format!("ovm-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.json");
        std::fs::write(&p, r#"{"log_level": "debug"}"#).unwrap();
        assert_eq!(read_settings(Some(&p)).unwrap(), log::LevelFilter::Debug);
        std::fs::write(&p, r#"{"log_level": "loud"}"#).unwrap();
        assert_eq!(read_settings(Some(&p)).unwrap_err().kind(), crate::ErrorKind::InvalidArgument);
        std::fs::write(&p, r#"{"colour": 1}"#).unwrap();
        assert!(read_settings(Some(&p)).is_err());
        assert_eq!(read_settings(None).unwrap(), log::LevelFilter::Info);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
