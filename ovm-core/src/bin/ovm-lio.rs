//! `ovm-lio`: the management interface of a Linux LIO iSCSI target, for ovm's LIO storage-array
//! plug-in (see `ovm_core::lio`). Run as root on the storage server.
//!
//! ```text
//! ovm-lio --state-dir DIR --target IQN [--target IQN]... --password-file FILE
//!         [--user NAME] [--listen ADDR:PORT] [--configfs DIR]
//! ```
//!
//! It sets up again what it manages, prints `ovm-lio: listening on ADDR, certificate sha256:...`
//! (the fingerprint is also in `DIR/fingerprint`, for the array's registration) and serves.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ovm_core::lio::server::{serve, Lio, LioConfig};

const USAGE: &str = "usage: ovm-lio --state-dir DIR --target IQN [--target IQN]... --password-file FILE \
[--user NAME] [--listen ADDR:PORT] [--configfs DIR]";

fn run(args: &[String]) -> Result<(), String> {
    let (mut state, mut targets, mut pw, mut user, mut listen, mut configfs) = (
        None,
        Vec::new(),
        None,
        "admin".to_owned(),
        format!("0.0.0.0:{}", ovm_core::lio::DEFAULT_PORT),
        None,
    );
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--state-dir" => state = Some(PathBuf::from(value()?)),
            "--target" => targets.push(value()?),
            "--password-file" => pw = Some(PathBuf::from(value()?)),
            "--user" => user = value()?,
            "--listen" => listen = value()?,
            "--configfs" => configfs = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let state = state.ok_or(format!("--state-dir is needed\n{USAGE}"))?;
    let pw = pw.ok_or(format!("--password-file is needed\n{USAGE}"))?;
    if targets.is_empty() {
        return Err(format!("at least one --target\n{USAGE}"));
    }
    let password = std::fs::read_to_string(&pw).map_err(|e| format!("{}: {e}", pw.display()))?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(format!("{}: an empty password", pw.display()));
    }
    let cfg = LioConfig {
        configfs: configfs.unwrap_or_else(|| PathBuf::from("/sys/kernel/config/target")),
        state_dir: state.clone(),
        targets,
        username: user,
        password,
    };
    let lio = Lio::open(cfg).map_err(|e| e.to_string())?;
    let fp = lio.fingerprint_of().map_err(|e| e.to_string())?;
    std::fs::write(state.join("fingerprint"), format!("{fp}\n")).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(&listen).map_err(|e| format!("listen on {listen}: {e}"))?;
    println!("ovm-lio: listening on {listen}, certificate {fp}");
    serve(Arc::new(lio), listener).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovm-lio: {e}");
            ExitCode::FAILURE
        }
    }
}
