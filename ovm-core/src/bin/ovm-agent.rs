//! `ovm-agent`: the ovm agent, run in dom0 of every Xen server (see `ovm_core::agent`).
//!
//! ```text
//! ovm-agent init --state-dir DIR --password-file FILE
//! ovm-agent serve --state-dir DIR [--listen ADDR] [--migration-address HOST:PORT] [--backend xen|sim:NAME] [--password-file FILE] [--storage-plugin-dir DIR] [--power-off-command CMD]
//! ovm-agent fingerprint --state-dir DIR
//! ovm-agent status --state-dir DIR
//! ovm-agent watchdog [--timeout SECS] [--interval SECS] [--alive-file FILE] [--hang-after SECS]
//! ```
//!
//! `serve` listens on `0.0.0.0:8899` by default and serves the local Xen host (`--backend xen`,
//! the default) or a simulated one (`sim:NAME`, for demonstrations and tests). With
//! `--password-file` it prepares the state directory first if it is new. When the owning manager
//! asks for a restart, the program executes itself again with the same arguments. External storage
//! plug-ins are looked for in `--storage-plugin-dir` (default `/usr/lib/ovm/storage-plugins`; see
//! `docs/storage-plugins.md`). `--power-off-command` is how the server shuts down and powers off
//! when its owner asks (DPM); it defaults to `poweroff` with the Xen backend, and is split on
//! whitespace into a program and its arguments. With `--alive-file`, `serve` rewrites that file
//! with its pid each second from its runtime, for the watchdog.
//!
//! `watchdog` arms Xen's watchdog for dom0 and pets it every interval (default 5 s) until SIGTERM
//! or SIGINT, which disarm it; Xen resets the server a timeout (default 30 s) after the last pet.
//! With `--alive-file` it stops petting while the agent is hung: its process runs but has not
//! rewritten the file for `--hang-after` (default 30 s). See `ovm_core::xen::watchdog`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ovm_core::agent::{Agent, AgentConfig, ServeEnd};
use ovm_core::driver::sim::{SimDriver, SimWorld, DEFAULT_PASSWORD};
use ovm_core::driver::{Driver, ServerConnection};
use ovm_core::xen::XenDriver;

const USAGE: &str = "usage:
  ovm-agent init --state-dir DIR --password-file FILE
  ovm-agent serve --state-dir DIR [--listen ADDR] [--migration-address HOST:PORT] [--backend xen|sim:NAME] [--password-file FILE] [--storage-plugin-dir DIR] [--power-off-command CMD]
  ovm-agent fingerprint --state-dir DIR
  ovm-agent status --state-dir DIR
  ovm-agent watchdog [--timeout SECS] [--interval SECS] [--alive-file FILE] [--hang-after SECS]";

#[derive(Debug, Default)]
struct Args {
    state_dir: Option<PathBuf>,
    listen: Option<String>,
    migration_address: Option<String>,
    backend: Option<String>,
    password_file: Option<PathBuf>,
    storage_plugin_dir: Option<PathBuf>,
    power_off_command: Option<Vec<String>>,
    alive_file: Option<PathBuf>,
    timeout: Option<u64>,
    interval: Option<u64>,
    hang_after: Option<u64>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--state-dir" => a.state_dir = Some(value()?.into()),
            "--listen" => a.listen = Some(value()?),
            "--migration-address" => {
                let v = value()?;
                if ovm_core::agent::parse_address(&v).is_none() {
                    return Err(format!("--migration-address {v:?} is not HOST:PORT"));
                }
                a.migration_address = Some(v)
            }
            "--backend" => a.backend = Some(value()?),
            "--password-file" => a.password_file = Some(value()?.into()),
            "--storage-plugin-dir" => {
                let v = value()?;
                if !v.starts_with('/') {
                    return Err(format!("--storage-plugin-dir {v:?} is not an absolute path"));
                }
                a.storage_plugin_dir = Some(v.into())
            }
            "--power-off-command" => {
                let v = value()?;
                let words: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
                if words.is_empty() {
                    return Err("--power-off-command is empty".into());
                }
                a.power_off_command = Some(words)
            }
            "--alive-file" => {
                let v = value()?;
                if !v.starts_with('/') {
                    return Err(format!("--alive-file {v:?} is not an absolute path"));
                }
                a.alive_file = Some(v.into())
            }
            "--timeout" | "--interval" | "--hang-after" => {
                let v = value()?;
                let secs =
                    v.parse::<u64>().map_err(|_| format!("{flag} {v:?} is not a number of seconds"))?;
                match flag.as_str() {
                    "--timeout" => a.timeout = Some(secs),
                    "--interval" => a.interval = Some(secs),
                    _ => a.hang_after = Some(secs),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn read_password(path: &PathBuf) -> Result<String, String> {
    let p = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let p = p.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        return Err(format!("{} holds an empty password", path.display()));
    }
    Ok(p)
}

fn backend(spec: &str, plugin_dir: Option<&PathBuf>) -> Result<Arc<dyn ServerConnection>, String> {
    const LOCAL: &str = "ovm-agent";
    if spec == "xen" {
        let mut driver = XenDriver::new(None);
        if let Some(dir) = plugin_dir {
            driver = driver.with_storage_plugin_dir(dir);
        }
        return driver.connect("xen:///", "", LOCAL).map_err(|e| format!("local Xen host: {e}"));
    }
    if let Some(name) = spec.strip_prefix("sim:").filter(|n| !n.is_empty()) {
        return SimDriver::new(SimWorld::default())
            .connect(&format!("sim://{name}"), DEFAULT_PASSWORD, LOCAL)
            .map_err(|e| format!("simulated host: {e}"));
    }
    Err(format!("unknown backend {spec:?} (xen or sim:NAME)"))
}

/// Writes the library's log records at level info and above to stderr, one line each, as
/// `ovm-agent: MESSAGE`: the program's connection and audit lines.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("ovm-agent: {}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn main() -> ExitCode {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let argv: Vec<String> = std::env::args().collect();
    let Some(cmd) = argv.get(1) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match parse(&argv[2..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ovm-agent: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if cmd == "watchdog" {
        return match watchdog(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ovm-agent watchdog: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(dir) = args.state_dir.clone() else {
        eprintln!("ovm-agent: --state-dir is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "init" => match &args.password_file {
            Some(f) => read_password(f)
                .and_then(|p| Agent::init(&dir, &p).map_err(|e| e.to_string()))
                .map(|fp| println!("agent state in {}; certificate {fp}", dir.display())),
            None => Err("init needs --password-file".into()),
        },
        "fingerprint" | "status" => Agent::inspect(&dir).map_err(|e| e.to_string()).map(|(fp, owner)| {
            println!("{fp}");
            if cmd == "status" {
                match owner {
                    Some(o) => println!("owned by manager {} (certificate {})", o.manager_id, o.fingerprint),
                    None => println!("unowned"),
                }
            }
        }),
        "serve" => serve(&args, dir, &argv),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovm-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Set by SIGTERM or SIGINT: the watchdog disarms and exits.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn watchdog(args: &Args) -> Result<(), String> {
    use ovm_core::xen::watchdog::{run, WatchdogConfig};
    let d = WatchdogConfig::default();
    let secs = |v: Option<u64>, default: Duration| v.map(Duration::from_secs).unwrap_or(default);
    let cfg = WatchdogConfig {
        timeout: secs(args.timeout, d.timeout),
        interval: secs(args.interval, d.interval),
        alive_file: args.alive_file.clone(),
        hang_after: secs(args.hang_after, d.hang_after),
    };
    cfg.check()?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
    }
    run(&cfg, &STOP, |m| eprintln!("ovm-agent watchdog: {m}"))
}

fn serve(args: &Args, dir: PathBuf, argv: &[String]) -> Result<(), String> {
    if let Some(f) = &args.password_file {
        if !dir.join("state.json").exists() {
            let fp = Agent::init(&dir, &read_password(f)?).map_err(|e| e.to_string())?;
            eprintln!("ovm-agent: new agent state in {}; certificate {fp}", dir.display());
        }
    }
    let hv = backend(args.backend.as_deref().unwrap_or("xen"), args.storage_plugin_dir.as_ref())?;
    let mut cfg = AgentConfig::new(&dir);
    // Where other agents send domains migrating here (the pool's live migrate network).
    cfg.migration_address = args.migration_address.clone();
    // How the server powers off when its owner asks: the init system's clean power-off on a Xen
    // server; a simulated host's own power state otherwise.
    let backend_name = args.backend.as_deref().unwrap_or("xen");
    cfg.power_off_command = args
        .power_off_command
        .clone()
        .or_else(|| (backend_name == "xen").then(|| vec!["poweroff".to_owned()]));
    let agent = Agent::open(cfg, hv).map_err(|e| e.to_string())?;
    let listen = args.listen.clone().unwrap_or_else(|| "0.0.0.0:8899".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let end = rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("listen on {listen}: {e}"))?;
        eprintln!(
            "ovm-agent: listening on {listen}; certificate {}; {}",
            agent.fingerprint().map_err(|e| e.to_string())?,
            match agent.owner() {
                Some(o) => format!("owned by manager {}", o.manager_id),
                None => "unowned".into(),
            }
        );
        if let Some(path) = args.alive_file.clone() {
            // From the runtime that serves: a hung runtime stops writing it.
            tokio::spawn(async move {
                let mut warned = false;
                loop {
                    if let Err(e) = ovm_core::xen::watchdog::write_alive_file(&path) {
                        if !warned {
                            eprintln!("ovm-agent: alive file {}: {e}", path.display());
                        }
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        agent.serve(listener).await.map_err(|e| e.to_string())
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    match end {
        ServeEnd::Stopped => Ok(()),
        ServeEnd::RestartRequested => {
            use std::os::unix::process::CommandExt;
            eprintln!("ovm-agent: restarting");
            let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
            let err = std::process::Command::new(exe).args(&argv[1..]).exec();
            Err(format!("restart: {err}"))
        }
    }
}
