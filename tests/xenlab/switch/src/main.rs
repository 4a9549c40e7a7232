//! `ovm-lab-switch --dir DIR --port MACHINE.NIC:SEGMENT ... [--on-wol COMMAND] [--seed N]`
//! `ovm-lab-switch ctl DIR COMMAND...`
//! `ovm-lab-switch tap DIR PORT IFNAME`
//!
//! Runs the lab switch until killed. Each port's machine plugs in with QEMU's
//! `-netdev dgram,id=ID,local.type=unix,local.path=DIR/PORT.machine,remote.type=unix,remote.path=DIR/PORT.switch`.
//! `DIR/control` takes the commands of `ovm_lab_switch::Switch::command`, one per line; each reply
//! ends with `ok` or is one `error: ...` line. `--on-wol COMMAND` runs `COMMAND MAC` for every
//! Wake-on-LAN magic packet seen (the lab's power controller). `ctl` sends one command to the
//! switch serving `DIR` and prints its reply (exit status 1 for an `error:` reply). `tap` creates the
//! TAP interface `IFNAME` (in the caller's network namespace) and plugs it into the switch's port
//! `PORT` until the interface or the switch goes away (the lab's manager on the management LAN).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ovm_lab_switch::{mac_str, serve, tap, Switch};

fn usage() -> ExitCode {
    eprintln!("usage: ovm-lab-switch --dir DIR --port MACHINE.NIC:SEGMENT... [--on-wol COMMAND] [--seed N]");
    eprintln!("       ovm-lab-switch ctl DIR COMMAND...");
    eprintln!("       ovm-lab-switch tap DIR PORT IFNAME");
    ExitCode::from(2)
}

/// `ctl DIR COMMAND...`: one command, its reply on standard output.
fn ctl(dir: &str, command: &[String]) -> ExitCode {
    let path = PathBuf::from(dir).join("control");
    let mut conn = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ovm-lab-switch: cannot reach {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    if conn.write_all(format!("{}\n", command.join(" ")).as_bytes()).is_err() {
        return ExitCode::from(1);
    }
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { break };
        if line == "ok" {
            return ExitCode::SUCCESS;
        }
        println!("{line}");
        if line.starts_with("error: ") {
            return ExitCode::from(1);
        }
    }
    ExitCode::from(1)
}

/// `tap DIR PORT IFNAME`: a TAP interface plugged into a port, until one side goes away.
fn plug(dir: &str, port: &str, ifname: &str) -> ExitCode {
    let dev = match tap::open_tap(ifname) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ovm-lab-switch: cannot create TAP interface {ifname}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("ovm-lab-switch: {ifname} plugged into port {port} of {dir}");
    match tap::plug_tap(std::path::Path::new(dir), port, dev) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovm-lab-switch: {ifname} on port {port}: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("ctl") {
        return match all.get(1) {
            Some(dir) if all.len() > 2 => ctl(dir, &all[2..]),
            _ => usage(),
        };
    }
    if all.first().map(String::as_str) == Some("tap") {
        return match all.as_slice() {
            [_, dir, port, ifname] => plug(dir, port, ifname),
            _ => usage(),
        };
    }
    let mut args = all.into_iter();
    let (mut dir, mut ports, mut on_wol, mut seed) = (None::<PathBuf>, Vec::new(), None::<String>, 1u64);
    while let Some(a) = args.next() {
        let Some(v) = args.next() else { return usage() };
        match a.as_str() {
            "--dir" => dir = Some(v.into()),
            "--port" => match v.split_once(':') {
                Some((name, seg)) if !seg.is_empty() => ports.push((name.to_owned(), seg.to_owned())),
                _ => return usage(),
            },
            "--on-wol" => on_wol = Some(v),
            "--seed" => match v.parse() {
                Ok(s) => seed = s,
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let Some(dir) = dir else { return usage() };
    if ports.is_empty() {
        return usage();
    }
    let switch = match Switch::new(&ports, seed) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ovm-lab-switch: {e}");
            return ExitCode::from(2);
        }
    };
    let hook: Option<Arc<dyn Fn([u8; 6]) + Send + Sync>> = on_wol.map(|cmd| {
        Arc::new(move |mac: [u8; 6]| {
            let m = mac_str(&mac);
            match std::process::Command::new(&cmd).arg(&m).spawn() {
                Ok(mut child) => {
                    std::thread::spawn(move || child.wait());
                }
                Err(e) => eprintln!("ovm-lab-switch: cannot run {cmd} {m}: {e}"),
            }
        }) as Arc<dyn Fn([u8; 6]) + Send + Sync>
    });
    match serve(switch, &dir, hook) {
        Ok(_running) => {
            eprintln!("ovm-lab-switch: {} ports, control at {}", ports.len(), dir.join("control").display());
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("ovm-lab-switch: {e}");
            ExitCode::from(1)
        }
    }
}
