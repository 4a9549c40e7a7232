//! Users, roles and the audit log of a manager service.
//!
//! Accounts live in the manager database (table `users`): a name, a [`Role`], a password hash
//! (PBKDF2-HMAC-SHA256 from `ring`, [`PBKDF2_ITERATIONS`] rounds, a 16-byte random salt) and the
//! SHA-256 fingerprints of client certificates registered to the user. Every call of the API is
//! classified once, in [`ACCESS`]: a call above the caller's role is refused with
//! [`Error::PermissionDenied`]. The service writes every refusal and every call that changes
//! something ([`Access::mutates`]) to the audit log (table `audit`), with the user, the peer, the method, a summary of the
//! arguments with every password removed, and the outcome.

use std::num::NonZeroU32;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::api::Call;
use crate::model::Timestamp;
use crate::{Error, Manager, Result};

/// Rounds of PBKDF2-HMAC-SHA256 for a new password hash (OWASP's figure for this function).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
const HASH_SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// The longest audit summary of a call's arguments, in characters.
const MAX_SUMMARY: usize = 512;

/// What an account may do; each role may do what the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads: objects, jobs, events, loads, plans.
    ReadOnly,
    /// Reads, and runs the inventory: servers, pools, VMs, storage, networks, jobs.
    Operator,
    /// Everything: also accounts, the audit log and the manager's settings.
    Administrator,
}

impl Role {
    /// The role a call needs.
    pub fn needed_for(access: Access) -> Role {
        match access {
            Access::Read => Role::ReadOnly,
            Access::Operate => Role::Operator,
            Access::Audit | Access::Administer => Role::Administrator,
        }
    }

    /// Whether this role may make a call of `access`.
    pub fn allows(self, access: Access) -> bool {
        self >= Role::needed_for(access)
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "readonly" | "read" => Ok(Role::ReadOnly),
            "operator" | "operate" => Ok(Role::Operator),
            "administrator" | "admin" => Ok(Role::Administrator),
            _ => Err(Error::invalid(
                "role",
                format!("{s:?} is not a role (administrator, operator, read-only)"),
            )),
        }
    }
}

/// The kind of a call, for authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// Changes nothing.
    Read,
    /// Changes the inventory or runs jobs.
    Operate,
    /// Reads what only administrators see: the accounts and the audit log.
    Audit,
    /// Changes accounts or the manager's settings.
    Administer,
}

impl Access {
    /// Whether a call of this access changes something (and so is written to the audit log).
    pub fn mutates(self) -> bool {
        matches!(self, Access::Operate | Access::Administer)
    }
}

/// The classification of every method of the API, in one place. A method missing here is
/// treated as [`Access::Administer`] (and a test fails until it is added).
pub const ACCESS: &[(&str, Access)] = &[
    ("manager_id", Access::Read),
    ("objects", Access::Read),
    ("object", Access::Read),
    ("find", Access::Read),
    ("discover_server", Access::Operate),
    ("take_over_server", Access::Operate),
    ("release_ownership", Access::Operate),
    ("refresh_server", Access::Operate),
    ("set_maintenance_mode", Access::Operate),
    ("power_off_server", Access::Operate),
    ("power_on_server", Access::Operate),
    ("create_pool", Access::Operate),
    ("add_server_to_pool", Access::Operate),
    ("remove_server_from_pool", Access::Operate),
    ("set_ha_failures_to_tolerate", Access::Operate),
    ("create_vm", Access::Operate),
    ("start_vm", Access::Operate),
    ("start_vm_on", Access::Operate),
    ("stop_vm", Access::Operate),
    ("kill_vm", Access::Operate),
    ("restart_vm", Access::Operate),
    ("pause_vm", Access::Operate),
    ("suspend_vm", Access::Operate),
    ("resume_vm", Access::Operate),
    ("migrate_vm", Access::Operate),
    ("delete_vm", Access::Operate),
    // A console may show what a read-only user should not see (boot prompts, passwords typed).
    ("vm_console", Access::Operate),
    ("send_vm_messages", Access::Operate),
    // What a guest reports may be as private as its console.
    ("vm_guest_data", Access::Operate),
    ("open_vm_console", Access::Operate),
    ("set_vm_boot", Access::Operate),
    ("set_vm_framebuffer", Access::Operate),
    ("set_vm_network_boot", Access::Operate),
    ("delete_object", Access::Operate),
    ("job", Access::Read),
    ("jobs", Access::Read),
    ("wait_job", Access::Read),
    ("abort_job", Access::Operate),
    ("events", Access::Read),
    ("event", Access::Read),
    ("acknowledge_event", Access::Operate),
    ("acknowledge_all", Access::Operate),
    ("current_token", Access::Read),
    ("events_since", Access::Read),
    ("take_ownership", Access::Operate),
    ("restart_agent", Access::Operate),
    ("out_of_band_power_state", Access::Read),
    ("power_controllers", Access::Read),
    ("server_load", Access::Read),
    ("vm_load", Access::Read),
    ("network_drift", Access::Read),
    ("reapply_network", Access::Operate),
    ("add_network_member", Access::Operate),
    ("remove_network_member", Access::Operate),
    ("delete_bond", Access::Operate),
    ("max_failures_tolerated", Access::Read),
    ("ha_plan", Access::Read),
    ("run_policy", Access::Operate),
    ("run_recurring", Access::Operate),
    ("recurring_jobs", Access::Read),
    ("set_recurring_job", Access::Administer),
    ("resume_vm_on", Access::Operate),
    ("migration_blockers", Access::Read),
    ("vm_nics", Access::Read),
    ("add_vnic", Access::Operate),
    ("remove_vnic", Access::Operate),
    ("vm_to_template", Access::Operate),
    ("create_anti_affinity_group", Access::Operate),
    ("present_repository", Access::Operate),
    ("present_repository_to", Access::Operate),
    ("unpresent_repository", Access::Operate),
    ("import_iso", Access::Operate),
    ("import_template", Access::Operate),
    ("import_assembly", Access::Operate),
    ("delete_template", Access::Operate),
    ("delete_virtual_disk", Access::Operate),
    ("refresh_file_server", Access::Operate),
    ("clone_lun", Access::Operate),
    ("resize_lun", Access::Operate),
    ("delete_lun", Access::Operate),
    ("present_lun", Access::Operate),
    ("unpresent_lun", Access::Operate),
    ("delete_access_group", Access::Operate),
    ("present_storage_array_to", Access::Operate),
    ("unpresent_storage_array", Access::Operate),
    ("create_object", Access::Operate),
    ("create_objects", Access::Operate),
    ("update_object", Access::Operate),
    ("prune_changes", Access::Administer),
    ("migration_limit", Access::Read),
    ("set_migration_limit", Access::Administer),
    ("mac_range", Access::Read),
    ("set_mac_range", Access::Administer),
    // Networks, storage, templates, plans and settings.
    ("create_network", Access::Operate),
    ("create_bond", Access::Operate),
    ("create_bond_with", Access::Operate),
    ("create_vlan_interface", Access::Operate),
    ("set_addressing", Access::Operate),
    ("desired_network_config", Access::Read),
    ("server_network_config", Access::Read),
    ("edit_server", Access::Operate),
    ("server_load_history", Access::Read),
    ("load_sampling", Access::Read),
    ("set_load_sampling", Access::Administer),
    ("certificate_fingerprint", Access::Read),
    ("agent_fingerprint", Access::Read),
    ("pool_cluster_status", Access::Read),
    ("reach_pool", Access::Read),
    ("ha_plan_for", Access::Read),
    ("policy_plan", Access::Read),
    ("stop_vm_with", Access::Operate),
    ("migrate_vm_with", Access::Operate),
    ("migration_blockers_with", Access::Read),
    ("assert_can_migrate", Access::Read),
    ("map_disk", Access::Operate),
    ("clone_template", Access::Operate),
    ("clone_vm", Access::Operate),
    ("register_file_server", Access::Operate),
    ("file_systems_of", Access::Read),
    ("create_repository", Access::Operate),
    ("create_virtual_disk", Access::Operate),
    ("import_kernel", Access::Operate),
    ("create_template", Access::Operate),
    ("register_storage_array", Access::Operate),
    ("physical_disks_of", Access::Read),
    ("create_lun", Access::Operate),
    ("create_access_group", Access::Operate),
    // Rebuilding the database from servers replaces the inventory: an administrator's act.
    ("rebuild_from_servers", Access::Administer),
    ("servers_where", Access::Read),
    ("vms_where", Access::Read),
    ("virtual_disks_where", Access::Read),
    ("set_vm_kernel", Access::Operate),
    ("set_vnic_network", Access::Operate),
    ("set_vm_high_availability", Access::Operate),
    ("set_pool_policy", Access::Operate),
    ("raise_event", Access::Operate),
    ("sample_loads", Access::Operate),
    ("create_user", Access::Administer),
    ("users", Access::Audit),
    ("delete_user", Access::Administer),
    ("set_user_password", Access::Administer),
    ("set_user_role", Access::Administer),
    ("set_user_certificates", Access::Administer),
    ("audit_log", Access::Audit),
];

/// The classification of a method by name ([`Access::Administer`] when it is not in [`ACCESS`]).
pub fn access_of(method: &str) -> Access {
    ACCESS.iter().find(|(m, _)| *m == method).map_or(Access::Administer, |(_, a)| *a)
}

impl Call {
    /// What the call needs (see [`ACCESS`]).
    pub fn access(&self) -> Access {
        access_of(self.method())
    }
}

/// A user's name and password, as a client presents them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The account's name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// Credentials of `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { user: user.into(), password: password.into() }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// An account as the API shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Whether it has a password.
    pub has_password: bool,
    /// SHA-256 fingerprints of client certificates that authenticate as this user.
    pub certificates: Vec<String>,
    /// When it was created (ms since the epoch).
    pub created: Timestamp,
}

/// An account as the database keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// `pbkdf2-sha256$ROUNDS$SALT$HASH` (base64), or none.
    pub password_hash: Option<String>,
    /// SHA-256 fingerprints of registered client certificates (`sha256:` and lowercase hex).
    pub certificates: Vec<String>,
    /// When it was created.
    pub created: Timestamp,
}

impl UserRecord {
    /// The account as the API shows it.
    pub fn account(&self) -> Account {
        Account {
            name: self.name.clone(),
            role: self.role,
            has_password: self.password_hash.is_some(),
            certificates: self.certificates.clone(),
            created: self.created,
        }
    }
}

/// How an audited call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    /// It ran and succeeded (for a job: the job was submitted).
    Ok,
    /// It was refused before running (authentication or role).
    Refused {
        /// Why.
        reason: String,
    },
    /// It ran and failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its number, from 1 in recording order (0 before it is recorded).
    pub id: u64,
    /// When (ms since the epoch).
    pub at: Timestamp,
    /// The user (`local:UID` for a local superuser; what was claimed, for a refused login).
    pub user: String,
    /// The peer: `unix:pid=…,uid=…` or `tls:ADDRESS`.
    pub peer: String,
    /// The method (`hello` for a refused connection).
    pub method: String,
    /// The arguments, as JSON with every password removed, at most 512 characters.
    pub summary: String,
    /// The outcome.
    pub outcome: AuditOutcome,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only refusals.
    pub refused_only: bool,
    /// At or after.
    pub since: Option<Timestamp>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.user.as_ref().is_none_or(|u| *u == e.user)
            && (!self.refused_only || matches!(e.outcome, AuditOutcome::Refused { .. }))
            && self.since.is_none_or(|s| e.at >= s)
    }
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if k.to_ascii_lowercase().contains("password") {
                    *x = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(x);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A call's arguments for the audit log: JSON, every field named like a password replaced, cut to
/// 512 characters.
pub fn summarize(call: &Call) -> String {
    let mut v = serde_json::to_value(call).unwrap_or_default();
    let mut args = v.get_mut("args").map(std::mem::take).unwrap_or_default();
    redact(&mut args);
    let s = args.to_string();
    if s.chars().count() > MAX_SUMMARY {
        let mut cut: String = s.chars().take(MAX_SUMMARY - 1).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

/// Hashes `password` with a new random salt (`pbkdf2-sha256$ROUNDS$SALT$HASH`).
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| Error::Internal { message: "no random numbers for a salt".into() })?;
    let mut out = [0u8; HASH_LEN];
    let rounds = NonZeroU32::new(PBKDF2_ITERATIONS).expect("a positive constant");
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, password.as_bytes(), &mut out);
    Ok(format!("{HASH_SCHEME}${PBKDF2_ITERATIONS}${}${}", b64().encode(salt), b64().encode(out)))
}

/// Whether `password` matches `hash` (in constant time over the hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    let parts: Vec<&str> = hash.split('$').collect();
    let [scheme, rounds, salt, expected] = parts[..] else { return false };
    let (Some(rounds), Ok(salt), Ok(expected)) =
        (rounds.parse::<u32>().ok().and_then(NonZeroU32::new), b64().decode(salt), b64().decode(expected))
    else {
        return false;
    };
    scheme == HASH_SCHEME
        && ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            password.as_bytes(),
            &expected,
        )
        .is_ok()
}

fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(Error::invalid("password", "a password has 8 to 1024 characters"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok {
        return Err(Error::invalid(
            "user",
            format!("{name:?}: a user name has 1 to 64 letters, digits, '.', '_', '-' or '@'"),
        ));
    }
    Ok(())
}

/// A certificate fingerprint in the form [`crate::agent::tls::fingerprint`] gives
/// (`sha256:` and 64 lowercase hex digits); the prefix and colons between bytes are optional.
pub(crate) fn normalize_fingerprint(fp: &str) -> Result<String> {
    let t = fp.trim();
    let t = t.strip_prefix("sha256:").or_else(|| t.strip_prefix("SHA256:")).unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid("certificate", format!("{fp:?} is not a SHA-256 fingerprint")));
    }
    Ok(format!("sha256:{hex}"))
}

fn normalize_fingerprints(fps: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = fps.iter().map(|f| normalize_fingerprint(f)).collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// A hash no password matches, checked for unknown users so that a refusal takes as long whether
/// the user exists or not.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut out = [0u8; HASH_LEN];
        let rounds = NonZeroU32::new(PBKDF2_ITERATIONS).expect("a positive constant");
        ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, b"ovm-decoy-salt!!", b"", &mut out);
        format!(
            "{HASH_SCHEME}${PBKDF2_ITERATIONS}${}${}",
            b64().encode(b"ovm-decoy-salt!!"),
            b64().encode(out)
        )
    })
}

/// What a service needs of its manager to authenticate users and keep the audit log.
pub trait Accounts: Send + Sync {
    /// The account `credentials` name, if its password matches; otherwise
    /// [`Error::PermissionDenied`] (the same for an unknown user and a wrong password).
    fn authenticate(&self, credentials: &Credentials) -> Result<Account>;
    /// The account a client certificate with this SHA-256 fingerprint is registered to.
    fn account_by_certificate(&self, fingerprint: &str) -> Result<Account>;
    /// Appends an entry to the audit log (its id and time are set when recorded).
    fn record_audit(&self, entry: AuditEntry) -> Result<()>;
}

fn denied(reason: impl Into<String>) -> Error {
    Error::PermissionDenied { reason: reason.into() }
}

impl Accounts for Manager {
    fn authenticate(&self, credentials: &Credentials) -> Result<Account> {
        let record = self.db().user(&credentials.user)?;
        let hash = record.as_ref().and_then(|r| r.password_hash.clone());
        let ok = verify_password(hash.as_deref().unwrap_or(decoy_hash()), &credentials.password);
        match record {
            Some(r) if ok && hash.is_some() => Ok(r.account()),
            _ => Err(denied("unknown user or wrong password")),
        }
    }

    fn account_by_certificate(&self, fingerprint: &str) -> Result<Account> {
        let fp = normalize_fingerprint(fingerprint)?;
        let users = self.db().users()?;
        users
            .into_iter()
            .find(|u| u.certificates.contains(&fp))
            .map(|u| u.account())
            .ok_or_else(|| denied("the client certificate is not registered to a user"))
    }

    fn record_audit(&self, mut entry: AuditEntry) -> Result<()> {
        entry.at = self.now();
        self.db().append_audit(&entry).map(|_| ())
    }
}

impl Manager {
    /// Creates an account (see [`Role`]); it needs a password or a client certificate
    /// fingerprint to be usable remotely.
    pub fn create_user(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
        certificates: Vec<String>,
    ) -> Result<Account> {
        check_name(name)?;
        let certificates = normalize_fingerprints(certificates)?;
        let password_hash = password.map(hash_password).transpose()?;
        let record =
            UserRecord { name: name.to_owned(), role, password_hash, certificates, created: self.now() };
        let mut db = self.db();
        if db.user(name)?.is_some() {
            return Err(Error::conflict(format!("user {name:?} exists")));
        }
        db.put_user(&record)?;
        Ok(record.account())
    }

    /// Every account, by name.
    pub fn users(&self) -> Result<Vec<Account>> {
        Ok(self.db().users()?.iter().map(UserRecord::account).collect())
    }

    fn edit_user(&self, name: &str, edit: impl FnOnce(&mut UserRecord) -> Result<()>) -> Result<Account> {
        let mut db = self.db();
        let mut record = db.user(name)?.ok_or_else(|| Error::invalid("user", format!("no user {name:?}")))?;
        edit(&mut record)?;
        db.put_user(&record)?;
        Ok(record.account())
    }

    /// Deletes an account.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        if !self.db().delete_user(name)? {
            return Err(Error::invalid("user", format!("no user {name:?}")));
        }
        Ok(())
    }

    /// Sets an account's password.
    pub fn set_user_password(&self, name: &str, password: &str) -> Result<Account> {
        let hash = hash_password(password)?;
        self.edit_user(name, |r| {
            r.password_hash = Some(hash);
            Ok(())
        })
    }

    /// Sets an account's role.
    pub fn set_user_role(&self, name: &str, role: Role) -> Result<Account> {
        self.edit_user(name, |r| {
            r.role = role;
            Ok(())
        })
    }

    /// Sets the client-certificate fingerprints that authenticate as an account.
    pub fn set_user_certificates(&self, name: &str, certificates: Vec<String>) -> Result<Account> {
        let certificates = normalize_fingerprints(certificates)?;
        self.edit_user(name, |r| {
            r.certificates = certificates;
            Ok(())
        })
    }

    /// Audit log entries, newest first.
    pub fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.db().audit(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Every method of the API is classified exactly once, and nothing else is: a new row of the
    /// table fails here until it is given its access.
    #[test]
    fn every_call_is_classified_once() {
        for m in Call::METHODS {
            let n = ACCESS.iter().filter(|(a, _)| a == m).count();
            assert_eq!(n, 1, "{m} is classified {n} times in ACCESS");
        }
        for (m, _) in ACCESS {
            assert!(Call::METHODS.contains(m), "{m} is in ACCESS but not a method");
        }
        assert_eq!(access_of("no_such_method"), Access::Administer);
        assert_eq!(Call::current_token {}.access(), Access::Read);
        assert_eq!(Call::start_vm { vm: crate::model::VmId(uuid::Uuid::nil()) }.access(), Access::Operate);
        assert_eq!(Call::users {}.access(), Access::Audit);
        assert!(!Access::Audit.mutates() && !Access::Read.mutates() && Access::Operate.mutates());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::ReadOnly.allows(Access::Read) && !Role::ReadOnly.allows(Access::Operate));
        assert!(Role::Operator.allows(Access::Operate) && !Role::Operator.allows(Access::Administer));
        assert!(!Role::Operator.allows(Access::Audit) && Role::Administrator.allows(Access::Audit));
        assert!(Role::Administrator.allows(Access::Administer));
        assert_eq!("read-only".parse::<Role>().unwrap(), Role::ReadOnly);
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Administrator);
        assert_eq!("root".parse::<Role>().unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn passwords_hash_slowly_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("pbkdf2-sha256$600000$"));
        assert!(!h.contains("correct horse"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horsE"));
        assert!(!verify_password("garbage", "x"));
        assert_ne!(hash_password("correct horse").unwrap(), h, "salted");
        assert_eq!(hash_password("short").unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn summaries_hide_passwords() {
        let call = Call::discover_server { address: "sim://a".into(), password: "s3cret-pw".into() };
        let s = summarize(&call);
        assert!(s.contains("sim://a") && !s.contains("s3cret-pw"), "{s}");
        let call = Call::create_user {
            name: "bob".into(),
            role: Role::Operator,
            password: Some("hunter2hunter2".into()),
            certificates: vec![],
        };
        assert!(!summarize(&call).contains("hunter2"));
        assert!(summarize(&Call::prune_changes { keep: 5 }).contains('5'));
    }

    #[test]
    fn accounts_are_kept_and_checked() {
        let m = Manager::open_in_memory().unwrap();
        let a = m.create_user("alice", Role::Operator, Some("alice-password"), vec![]).unwrap();
        assert!(a.has_password && a.role == Role::Operator);
        assert_eq!(
            m.create_user("alice", Role::ReadOnly, None, vec![]).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            m.create_user("bad name", Role::ReadOnly, None, vec![]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            m.create_user("carol", Role::ReadOnly, None, vec!["zz".into()]).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(m.users().unwrap().len(), 1, "refused creations store nothing");
        assert_eq!(m.authenticate(&Credentials::new("alice", "alice-password")).unwrap().name, "alice");
        let wrong = m.authenticate(&Credentials::new("alice", "alice-passwor")).unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::PermissionDenied);
        let unknown = m.authenticate(&Credentials::new("nobody", "alice-password")).unwrap_err();
        assert_eq!(unknown.to_string(), wrong.to_string());
        m.set_user_role("alice", Role::ReadOnly).unwrap();
        m.set_user_password("alice", "another-password").unwrap();
        assert!(m.authenticate(&Credentials::new("alice", "alice-password")).is_err());
        assert_eq!(
            m.authenticate(&Credentials::new("alice", "another-password")).unwrap().role,
            Role::ReadOnly
        );
        let fp = "AB".repeat(32);
        m.set_user_certificates("alice", vec![fp.clone()]).unwrap();
        assert_eq!(m.account_by_certificate(&fp).unwrap().name, "alice");
        m.delete_user("alice").unwrap();
        assert_eq!(m.delete_user("alice").unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(m.account_by_certificate(&fp).unwrap_err().kind(), ErrorKind::PermissionDenied);
    }
}
