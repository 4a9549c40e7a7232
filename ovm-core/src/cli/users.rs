//! `ovm user …` and `ovm audit …`: the manager service's accounts and audit log; how the command
//! reads a password (`OVM_PASSWORD`, or a prompt on a terminal) and the sealing key (`--key-file`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;

use super::{table, Ctx};
use crate::agent::tls::Identity;
use crate::manager::sealing::SealingKey;
use crate::remote::{Account, AuditEntry, AuditFilter, AuditOutcome, Role};
use crate::{Error, Result};

/// The environment variable a password is read from before a prompt is shown.
pub const PASSWORD_ENV: &str = "OVM_PASSWORD";

/// `ovm user …`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List the accounts.
    List,
    /// Create an account; its password comes from OVM_PASSWORD or a prompt (unless --no-password).
    Add {
        /// The name.
        name: String,
        /// administrator, operator or read-only.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// SHA-256 fingerprint of a client certificate that authenticates as this user (repeatable).
        #[arg(long = "certificate", value_name = "FINGERPRINT")]
        certificates: Vec<String>,
        /// Create it without a password (it logs in by certificate only).
        #[arg(long)]
        no_password: bool,
    },
    /// Delete an account.
    Delete {
        /// The name.
        name: String,
    },
    /// Set an account's password (from OVM_PASSWORD or a prompt).
    Passwd {
        /// The name.
        name: String,
    },
    /// Set an account's role.
    Role {
        /// The name.
        name: String,
        /// administrator, operator or read-only.
        #[arg(value_parser = parse_role)]
        role: Role,
    },
}

/// `ovm audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Audit log entries, newest first: refusals and every call that changes something.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Only refusals.
        #[arg(long)]
        refused: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn parse_role(s: &str) -> std::result::Result<Role, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let fd = libc::STDIN_FILENO;
    // SAFETY: `termios` is plain data; tcgetattr fills it for a valid descriptor, and is checked.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is the process's standard input; `saved` is valid for writes.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(Error::invalid("password", "cannot read a password from this terminal"));
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: as above; `quiet` is a copy of the terminal's settings with echo off.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    eprintln!();
    read.map_err(|e| Error::invalid("password", format!("cannot read it: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// A password: `OVM_PASSWORD` if set, else asked on the terminal (twice when `confirm`).
pub fn password(what: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::invalid(
            "password",
            format!("set {PASSWORD_ENV}, or run on a terminal to be asked for {what}"),
        ));
    }
    let p = prompt_hidden(&format!("{what}: "))?;
    if confirm && prompt_hidden("Again: ")? != p {
        return Err(Error::invalid("password", "the two passwords differ"));
    }
    Ok(p)
}

/// The service's TLS certificate and key kept at `path` (JSON, mode 0600), generated the first time.
pub fn tls_identity(path: &Path, common_name: &str) -> Result<Identity> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |e: String| Error::invalid("tls-identity", format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id: Identity = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            id.validate()?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate(common_name)?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| bad(e.to_string()))?;
            f.write_all(serde_json::to_string(&id)?.as_bytes()).map_err(|e| bad(e.to_string()))?;
            Ok(id)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The sealing key of `--key-file`, if given.
pub fn sealing_key(path: Option<&Path>) -> Result<Option<SealingKey>> {
    path.map(SealingKey::from_file).transpose()
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::ReadOnly => "read-only",
        Role::Operator => "operator",
        Role::Administrator => "administrator",
    }
}

fn accounts(users: &[Account]) -> table::Table {
    let mut t = table::Table::new(&["NAME", "ROLE", "PASSWORD", "CERTIFICATES"]);
    for u in users {
        t.row(vec![
            u.name.clone(),
            role_name(u.role).into(),
            if u.has_password { "yes" } else { "no" }.into(),
            u.certificates.len().to_string(),
        ]);
    }
    t
}

fn audit(entries: &[AuditEntry]) -> table::Table {
    let mut t = table::Table::new(&["ID", "AT", "USER", "PEER", "METHOD", "OUTCOME", "ARGUMENTS"]);
    for e in entries {
        let outcome = match &e.outcome {
            AuditOutcome::Ok => "ok".to_owned(),
            AuditOutcome::Refused { reason } => format!("refused: {reason}"),
            AuditOutcome::Failed { error } => format!("failed: {error}"),
        };
        t.row(vec![
            e.id.to_string(),
            utc(e.at),
            e.user.clone(),
            e.peer.clone(),
            e.method.clone(),
            outcome,
            e.summary.clone(),
        ]);
    }
    t
}

impl Ctx<'_> {
    pub(super) fn user(mut self, cmd: &UserCmd) -> Result<()> {
        let api = self.api;
        match cmd {
            UserCmd::List => {
                let users = api.users()?;
                self.emit(&users, |u| Ok(accounts(u)))
            }
            UserCmd::Add { name, role, certificates, no_password } => {
                let pw =
                    if *no_password { None } else { Some(password(&format!("Password of {name}"), true)?) };
                let a = api.create_user(name.clone(), *role, pw, certificates.clone())?;
                self.emit(&a, |a| Ok(accounts(std::slice::from_ref(a))))
            }
            UserCmd::Delete { name } => api.delete_user(name.clone()),
            UserCmd::Passwd { name } => {
                let pw = password(&format!("New password of {name}"), true)?;
                let a = api.set_user_password(name.clone(), pw)?;
                self.emit(&a, |a| Ok(accounts(std::slice::from_ref(a))))
            }
            UserCmd::Role { name, role } => {
                let a = api.set_user_role(name.clone(), *role)?;
                self.emit(&a, |a| Ok(accounts(std::slice::from_ref(a))))
            }
        }
    }

    pub(super) fn audit(mut self, cmd: &AuditCmd) -> Result<()> {
        match cmd {
            AuditCmd::List { user, refused, limit } => {
                let filter = AuditFilter {
                    user: user.clone(),
                    refused_only: *refused,
                    since: None,
                    limit: Some(*limit),
                };
                let entries = self.api.audit_log(filter)?;
                self.emit(&entries, |e| Ok(audit(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_300_000_123), "2026-12-03T12:13:20Z");
    }

    #[test]
    fn roles_parse_on_the_command_line() {
        assert_eq!(parse_role("read-only"), Ok(Role::ReadOnly));
        assert!(parse_role("god").is_err());
    }
}
