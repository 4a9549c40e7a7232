//! The SQLite manager database: versioned schema, every batch in one transaction.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::lock::DatabaseLock;
use super::{Batch, Durability, EventFilter, JobFilter, Journal, ObjectWrite, Store, SCHEMA_VERSION};
use crate::model::{
    Change, ChangeOp, Event, EventId, Job, JobId, JobState, Object, ObjectKind, ObjectRef, Severity,
    Timestamp,
};
use crate::remote::auth::{AuditEntry, AuditFilter, UserRecord};
use crate::{Error, Result};

const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE objects(id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL);
     CREATE INDEX objects_kind ON objects(kind);
     CREATE TABLE jobs(id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,
                       parent TEXT, body TEXT NOT NULL, journal TEXT NOT NULL DEFAULT '{\"steps\":[]}');
     CREATE INDEX jobs_created ON jobs(created);
     CREATE TABLE job_targets(object TEXT NOT NULL, job TEXT NOT NULL, PRIMARY KEY(object, job)) WITHOUT ROWID;
     CREATE TABLE events(id TEXT PRIMARY KEY, object TEXT NOT NULL, severity INTEGER NOT NULL,
                         created INTEGER NOT NULL, acknowledged INTEGER, body TEXT NOT NULL);
     CREATE INDEX events_object ON events(object);
     CREATE INDEX events_created ON events(created);
     CREATE TABLE changes(token INTEGER PRIMARY KEY, kind TEXT NOT NULL, object TEXT NOT NULL,
                          op TEXT NOT NULL, at INTEGER NOT NULL);
     CREATE TABLE recurring(name TEXT PRIMARY KEY, interval_ms INTEGER NOT NULL, enabled INTEGER NOT NULL);",
    // Version 2: the service's accounts and audit log.
    "CREATE TABLE users(name TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE audit(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, user TEXT NOT NULL, body TEXT NOT NULL);
     CREATE INDEX audit_user ON audit(user);",
];

/// A filtered query over a table's JSON `body` column (job and event history).
struct BodyQuery {
    sql: String,
    args: Vec<Box<dyn rusqlite::ToSql>>,
}

impl BodyQuery {
    fn new(select: &str) -> Self {
        BodyQuery { sql: select.to_owned(), args: Vec::new() }
    }

    fn cond(&mut self, clause: &str, arg: impl rusqlite::ToSql + 'static) {
        self.sql.push_str(clause);
        self.args.push(Box::new(arg));
    }

    fn time_range(&mut self, column: &str, since: Option<Timestamp>, until: Option<Timestamp>) {
        if let Some(s) = since {
            self.cond(&format!(" AND {column} >= ?"), s as i64);
        }
        if let Some(u) = until {
            self.cond(&format!(" AND {column} < ?"), u as i64);
        }
    }

    fn fetch<T: serde::de::DeserializeOwned>(
        mut self,
        conn: &Connection,
        order: &str,
        limit: Option<usize>,
    ) -> Result<Vec<T>> {
        self.sql.push_str(&format!(" ORDER BY {order}"));
        if let Some(l) = limit {
            self.cond(" LIMIT ?", l as i64);
        }
        let mut st = conn.prepare(&self.sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(self.args.iter()), |r| r.get::<_, String>(0))?;
        rows.map(|b| Ok(serde_json::from_str(&b?)?)).collect()
    }
}

/// The SQLite manager database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// The database file's exclusive lock (`None` for an in-memory database, or once released).
    lock: Option<DatabaseLock>,
    /// Set when the lock was released: the store takes no more writes.
    released: bool,
}

fn sev_num(s: Severity) -> i64 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Error => 2,
        Severity::Critical => 3,
    }
}

fn db_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Database { message: format!("{context}: {e}") }
}

impl SqliteStore {
    /// Open (or create) the database file at `path`. A file that is not an ovm database, is corrupt,
    /// or has a newer schema is refused with a clear error and left untouched. A database has one
    /// manager: while another live process (or another manager in this one) holds the file, opening
    /// it fails at once with [`Error::DatabaseLocked`] naming the holder's process id.
    pub fn open(path: &Path, durability: Durability) -> Result<SqliteStore> {
        let lock = DatabaseLock::acquire(path)?;
        let existed = path.exists();
        if !existed {
            // The database holds the manager's private key (for agents): readable by its owner only.
            // SQLite gives its journal files the database file's permissions.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::Database { message: format!("cannot create {}: {e}", path.display()) })?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_err(&format!("cannot open {}", path.display()), e))?;
        if existed {
            Self::check_existing(&conn, path)?;
        }
        let mut store = Self::init(conn, durability, true)?;
        store.lock = Some(lock);
        Ok(store)
    }

    /// Open an existing database file for reading only, without its lock: beside a manager that
    /// holds it, for reports. The connection cannot write (SQLite refuses), and in WAL mode it reads
    /// a consistent snapshot per statement while the manager writes. The file must exist and pass
    /// the same checks as [`SqliteStore::open`].
    pub fn open_read_only(path: &Path) -> Result<SqliteStore> {
        if !path.exists() {
            return Err(Error::Database { message: format!("{} does not exist", path.display()) });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| db_err(&format!("cannot open {}", path.display()), e))?;
        Self::check_existing(&conn, path)?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version as usize != MIGRATIONS.len() {
            return Err(db_err(
                &path.display().to_string(),
                "has an older schema; open it read-write once (a manager upgrades it) before reading it",
            ));
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(SqliteStore { conn, lock: None, released: true })
    }

    /// A private in-memory database.
    pub fn open_in_memory() -> Result<SqliteStore> {
        let conn = Connection::open_in_memory()?;
        Self::init(conn, Durability::Normal, false)
    }

    /// Read-only checks before anything is written to an existing file.
    fn check_existing(conn: &Connection, path: &Path) -> Result<()> {
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| {
            db_err(&format!("{} is not a readable ovm database (left untouched)", path.display()), e)
        })?;
        if version > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
        }
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(|e| {
                db_err(&format!("{} is not a readable ovm database (left untouched)", path.display()), e)
            })?;
        if version == 0 && tables > 0 {
            return Err(db_err(
                &path.display().to_string(),
                "is an SQLite database of another program (left untouched)",
            ));
        }
        if version > 0 {
            let ok: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| db_err(&format!("{} is corrupt (left untouched)", path.display()), e))?;
            if ok != "ok" {
                return Err(db_err(&format!("{} is corrupt (left untouched)", path.display()), ok));
            }
            let app: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key='application'", [], |r| r.get(0))
                .optional()
                .map_err(|e| {
                    db_err(&format!("{} is not an ovm database (left untouched)", path.display()), e)
                })?;
            if app.as_deref() != Some("ovm") {
                return Err(db_err(&path.display().to_string(), "is not an ovm database (left untouched)"));
            }
        }
        Ok(())
    }

    fn init(mut conn: Connection, durability: Durability, wal: bool) -> Result<SqliteStore> {
        if wal {
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(db_err("cannot enable WAL", mode));
            }
        }
        conn.execute_batch(match durability {
            Durability::Normal => "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=8192;",
            Durability::Full => "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;",
        })?;
        // What is deleted or replaced is overwritten, not left in free space: a secret once stored
        // in the clear and then encrypted (see `manager::sealing`) does not linger in the file.
        conn.execute_batch("PRAGMA secure_delete=ON;")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(m)?;
            tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('application', 'ovm')", [])?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)?;
            tx.commit()?;
        }
        Ok(SqliteStore { conn, lock: None, released: false })
    }

    fn writable(&self) -> Result<()> {
        if self.released {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn write_batch(tx: &rusqlite::Transaction<'_>, batch: &Batch, now: Timestamp) -> Result<Vec<u64>> {
        let mut tokens = Vec::with_capacity(batch.changes.len());
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO objects(id, kind, name, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut del = tx.prepare_cached("DELETE FROM objects WHERE id = ?1")?;
            for w in &batch.objects {
                match w {
                    ObjectWrite::Put(o) => {
                        put.execute(params![
                            o.uuid().to_string(),
                            o.kind().name(),
                            o.name(),
                            serde_json::to_string(o)?
                        ])?;
                    }
                    ObjectWrite::Remove(r) => {
                        del.execute(params![r.id.to_string()])?;
                    }
                }
            }
            let mut job_ins = tx.prepare_cached(
                "INSERT INTO jobs(id, kind, state, created, parent, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
            )?;
            let mut journal = tx.prepare_cached("UPDATE jobs SET journal = ?2 WHERE id = ?1")?;
            let mut target =
                tx.prepare_cached("INSERT OR IGNORE INTO job_targets(object, job) VALUES (?1, ?2)")?;
            for (j, jr) in &batch.jobs {
                let id = j.id.to_string();
                job_ins.execute(params![
                    id,
                    j.kind,
                    j.state.name(),
                    j.created as i64,
                    j.parent.map(|p| p.to_string()),
                    serde_json::to_string(j)?
                ])?;
                if let Some(jr) = jr {
                    journal.execute(params![id, serde_json::to_string(jr)?])?;
                }
                if j.state == JobState::Queued {
                    for t in &j.targets {
                        target.execute(params![t.id.to_string(), id])?;
                    }
                }
            }
            let mut ev = tx.prepare_cached(
                "INSERT OR REPLACE INTO events(id, object, severity, created, acknowledged, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for e in &batch.events {
                ev.execute(params![
                    e.id.to_string(),
                    e.object.id.to_string(),
                    sev_num(e.severity),
                    e.created as i64,
                    e.acknowledged.map(|a| a as i64),
                    serde_json::to_string(e)?
                ])?;
            }
            let mut ch =
                tx.prepare_cached("INSERT INTO changes(kind, object, op, at) VALUES (?1, ?2, ?3, ?4)")?;
            for (r, op) in &batch.changes {
                ch.execute(params![r.kind.name(), r.id.to_string(), op.name(), now as i64])?;
                tokens.push(tx.last_insert_rowid() as u64);
            }
            let mut meta = tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
            for (k, v) in &batch.meta {
                meta.execute(params![k, v])?;
            }
        }
        Ok(tokens)
    }
}

impl Store for SqliteStore {
    fn release_lock(&mut self) {
        self.lock = None;
        self.released = true;
    }

    fn commit_many(&mut self, batches: &[&Batch], now: Timestamp) -> Result<Vec<Vec<u64>>> {
        self.writable()?;
        let tx = self.conn.transaction()?;
        let mut all = Vec::with_capacity(batches.len());
        for batch in batches {
            all.push(Self::write_batch(&tx, batch, now)?);
        }
        tx.commit()?;
        Ok(all)
    }

    fn load_objects(&self) -> Result<Vec<Object>> {
        let mut st = self.conn.prepare("SELECT kind, body FROM objects")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut v = Vec::new();
        for row in rows {
            let (kind, body) = row?;
            let o: Object = serde_json::from_str(&body)
                .map_err(|e| db_err(&format!("stored {kind} does not decode"), e))?;
            v.push(o);
        }
        Ok(v)
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")?;
        let rows = st.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    fn job(&self, id: JobId) -> Result<Option<Job>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM jobs WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(Error::from)).transpose()
    }

    fn unfinished_jobs(&self) -> Result<Vec<(Job, Journal)>> {
        let mut st = self.conn.prepare(
            "SELECT body, journal FROM jobs WHERE state NOT IN ('Completed', 'Failed', 'Aborted') ORDER BY created",
        )?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut v = Vec::new();
        for row in rows {
            let (b, j) = row?;
            v.push((serde_json::from_str(&b)?, serde_json::from_str(&j)?));
        }
        Ok(v)
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<Job>> {
        let mut q = BodyQuery::new("SELECT j.body FROM jobs j WHERE 1=1");
        if let Some(o) = f.object {
            q.cond(" AND j.id IN (SELECT job FROM job_targets WHERE object = ?)", o.to_string());
        }
        if !f.states.is_empty() {
            q.sql.push_str(&format!(" AND j.state IN ({})", vec!["?"; f.states.len()].join(",")));
            q.args.extend(f.states.iter().map(|s| Box::new(s.name()) as Box<dyn rusqlite::ToSql>));
        }
        q.time_range("j.created", f.since, f.until);
        q.fetch(&self.conn, "j.created DESC, j.rowid DESC", f.limit)
    }

    fn event(&self, id: EventId) -> Result<Option<Event>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM events WHERE id = ?1", [id.to_string()], |r| r.get(0))
            .optional()?;
        body.map(|b| serde_json::from_str(&b).map_err(Error::from)).transpose()
    }

    fn events(&self, f: &EventFilter) -> Result<Vec<Event>> {
        let mut q = BodyQuery::new("SELECT body FROM events WHERE 1=1");
        if let Some(o) = f.object {
            q.cond(" AND object = ?", o.to_string());
        }
        if let Some(s) = f.min_severity {
            q.cond(" AND severity >= ?", sev_num(s));
        }
        match f.acknowledged {
            Some(true) => q.sql.push_str(" AND acknowledged IS NOT NULL"),
            Some(false) => q.sql.push_str(" AND acknowledged IS NULL"),
            None => {}
        }
        q.time_range("created", f.since, f.until);
        q.fetch(&self.conn, "created DESC, rowid DESC", f.limit)
    }

    fn changes_since(&self, token: u64, limit: usize) -> Result<Vec<Change>> {
        let mut st = self.conn.prepare_cached(
            "SELECT token, kind, object, op, at FROM changes WHERE token > ?1 ORDER BY token LIMIT ?2",
        )?;
        let rows = st.query_map(params![token as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut v = Vec::new();
        for row in rows {
            let (t, k, o, op, at) = row?;
            let kind =
                ObjectKind::from_name(&k).ok_or_else(|| db_err("changes", format!("unknown kind {k}")))?;
            let id = uuid::Uuid::parse_str(&o).map_err(|e| db_err("changes", e))?;
            let op = ChangeOp::from_name(&op).ok_or_else(|| db_err("changes", format!("unknown op {op}")))?;
            v.push(Change { token: t as u64, object: ObjectRef::new(kind, id), op, at: at as u64 });
        }
        Ok(v)
    }

    fn last_token(&self) -> Result<u64> {
        let t: Option<i64> = self.conn.query_row("SELECT max(token) FROM changes", [], |r| r.get(0))?;
        Ok(t.unwrap_or(0) as u64)
    }

    fn first_token(&self) -> Result<u64> {
        let t: Option<i64> = self.conn.query_row("SELECT min(token) FROM changes", [], |r| r.get(0))?;
        Ok(t.unwrap_or(0) as u64)
    }

    fn prune_changes(&mut self, keep: u64) -> Result<usize> {
        self.writable()?;
        let keep = keep.max(1);
        let last = self.last_token()?;
        Ok(self.conn.execute("DELETE FROM changes WHERE token <= ?1", [last.saturating_sub(keep) as i64])?)
    }

    fn recurring(&self) -> Result<Vec<(String, u64, bool)>> {
        let mut st = self.conn.prepare("SELECT name, interval_ms, enabled FROM recurring ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, bool>(2)?))
        })?;
        rows.map(|r| r.map_err(Error::from)).collect()
    }

    fn set_recurring(&mut self, name: &str, interval_ms: u64, enabled: bool) -> Result<()> {
        self.writable()?;
        self.conn.execute(
            "INSERT OR REPLACE INTO recurring(name, interval_ms, enabled) VALUES (?1, ?2, ?3)",
            params![name, interval_ms as i64, enabled],
        )?;
        Ok(())
    }

    fn users(&self) -> Result<Vec<UserRecord>> {
        let mut st = self.conn.prepare("SELECT body FROM users ORDER BY name")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        let body: Option<String> =
            self.conn.query_row("SELECT body FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        body.map(|b| Ok(serde_json::from_str(&b)?)).transpose()
    }

    fn put_user(&mut self, user: &UserRecord) -> Result<()> {
        self.writable()?;
        self.conn.execute(
            "INSERT OR REPLACE INTO users(name, body) VALUES (?1, ?2)",
            params![user.name, serde_json::to_string(user)?],
        )?;
        Ok(())
    }

    fn delete_user(&mut self, name: &str) -> Result<bool> {
        self.writable()?;
        Ok(self.conn.execute("DELETE FROM users WHERE name = ?1", [name])? > 0)
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> Result<u64> {
        self.writable()?;
        let tx = self.conn.transaction()?;
        let id: i64 = tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM audit", [], |r| r.get(0))?;
        let mut e = entry.clone();
        e.id = id as u64;
        tx.execute(
            "INSERT INTO audit(id, at, user, body) VALUES (?1, ?2, ?3, ?4)",
            params![id, e.at as i64, e.user, serde_json::to_string(&e)?],
        )?;
        tx.commit()?;
        Ok(e.id)
    }

    fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut st = self.conn.prepare("SELECT body FROM audit ORDER BY id DESC")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for r in rows {
            let e: AuditEntry = serde_json::from_str(&r?)?;
            if f.matches(&e) {
                out.push(e);
                if f.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage_and_newer_schema_without_touching() {
        let dir = std::env::temp_dir().join(format!("ovm-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.db");
        std::fs::write(&garbage, b"this is not a database at all, just some bytes......").unwrap();
        let before = std::fs::read(&garbage).unwrap();
        let err = SqliteStore::open(&garbage, Durability::Normal).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Database);
        assert_eq!(std::fs::read(&garbage).unwrap(), before);

        let newer = dir.join("newer.db");
        {
            let c = Connection::open(&newer).unwrap();
            c.pragma_update(None, "user_version", 99u32).unwrap();
        }
        let before = std::fs::read(&newer).unwrap();
        let err = SqliteStore::open(&newer, Durability::Normal).unwrap_err();
        assert_eq!(err, Error::SchemaTooNew { found: 99, supported: SCHEMA_VERSION });
        assert_eq!(std::fs::read(&newer).unwrap(), before);

        let other = dir.join("other.db");
        {
            let c = Connection::open(&other).unwrap();
            c.execute_batch("CREATE TABLE t(x)").unwrap();
        }
        assert_eq!(
            SqliteStore::open(&other, Durability::Normal).unwrap_err().kind(),
            crate::ErrorKind::Database
        );

        let good = dir.join("good.db");
        let s = SqliteStore::open(&good, Durability::Full).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&good).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new database is readable by its owner only");
        drop(s);
        let s = SqliteStore::open(&good, Durability::Normal).unwrap();
        assert_eq!(s.meta("application").unwrap().as_deref(), Some("ovm"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A version-1 database (before accounts) is read by reports only once a manager upgraded it,
    /// and the upgrade keeps what it held and adds the accounts and the audit log.
    #[test]
    fn a_version_1_database_gains_accounts_and_an_audit_log() {
        let dir = std::env::temp_dir().join(format!("ovm-sqlite-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute("INSERT INTO meta(key, value) VALUES ('application', 'ovm'), ('manager_id', 'm1')", [])
                .unwrap();
            c.pragma_update(None, "user_version", 1u32).unwrap();
        }
        assert_eq!(SqliteStore::open_read_only(&path).unwrap_err().kind(), crate::ErrorKind::Database);
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        assert_eq!(s.schema_version().unwrap(), 2);
        assert_eq!(s.meta("manager_id").unwrap().as_deref(), Some("m1"));
        assert!(s.users().unwrap().is_empty() && s.audit(&AuditFilter::default()).unwrap().is_empty());
        let user = UserRecord {
            name: "a".into(),
            role: crate::remote::auth::Role::ReadOnly,
            password_hash: None,
            certificates: vec![],
            created: 1,
        };
        s.put_user(&user).unwrap();
        drop(s);
        let ro = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(ro.users().unwrap(), vec![user]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
