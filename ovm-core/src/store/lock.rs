//! One manager per database: an exclusive OS file lock held for as long as the manager uses the file.
//!
//! The lock is `flock(2)` on a file beside the database (`<database>.lock`), not on the database
//! itself, so it never interferes with SQLite's own locks. The kernel drops it when the holder's last
//! descriptor closes, so a process that crashed or was killed never leaves the database locked. The
//! holder writes its process id into the file so that the one refused can name it. Descriptors are
//! opened close-on-exec: a program the holder starts does not inherit the lock.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The exclusive lock of one manager database; released when dropped.
#[derive(Debug)]
pub(crate) struct DatabaseLock {
    _file: File,
}

/// Where the lock of the database at `db` lives. A symbolic link to the database is followed, so two
/// names of the same file share one lock.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let real = std::fs::canonicalize(db).ok().or_else(|| {
        // A database not created yet: its directory's real path.
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::canonicalize(dir).ok().map(|d| d.join(&name))
    });
    let real = real.unwrap_or_else(|| db.to_path_buf());
    if let Some(n) = real.file_name() {
        name = n.to_os_string();
    }
    name.push(".lock");
    real.with_file_name(name)
}

impl DatabaseLock {
    /// Take the lock of the database at `db` at once, or fail with [`Error::DatabaseLocked`] naming
    /// the process that holds it.
    pub(crate) fn acquire(db: &Path) -> Result<DatabaseLock> {
        let path = lock_path(db);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::Database {
                message: format!("cannot open the lock file {}: {e}", path.display()),
            })?;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::DatabaseLocked {
                    path: db.display().to_string(),
                    pid: holder_pid(&mut file),
                });
            }
            return Err(Error::Database { message: format!("cannot lock {}: {err}", path.display()) });
        }
        let pid = std::process::id();
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|_| file.flush());
        written.map_err(|e| Error::Database {
            message: format!("cannot write the lock file {}: {e}", path.display()),
        })?;
        Ok(DatabaseLock { _file: file })
    }
}

/// The process id the holder wrote into the lock file. The holder writes it right after taking the
/// lock, so an empty file is read again for a moment before giving up.
fn holder_pid(file: &mut File) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let mut text = String::new();
        let read = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
        if let Ok(pid) = text.trim().parse::<u32>() {
            return Some(pid);
        }
        if read.is_err() || Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_and_freed_on_drop() {
        let dir = std::env::temp_dir().join(format!("ovm-lock-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("m.db");
        let held = DatabaseLock::acquire(&db).unwrap();
        match DatabaseLock::acquire(&db) {
            Err(Error::DatabaseLocked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected DatabaseLocked, got {other:?}"),
        }
        drop(held);
        let again = DatabaseLock::acquire(&db).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_shares_the_lock_of_its_target() {
        let dir = std::env::temp_dir().join(format!("ovm-lock-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("m.db");
        std::fs::write(&db, b"").unwrap();
        std::os::unix::fs::symlink(&db, dir.join("alias.db")).unwrap();
        let _held = DatabaseLock::acquire(&db).unwrap();
        assert!(matches!(DatabaseLock::acquire(&dir.join("alias.db")), Err(Error::DatabaseLocked { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
