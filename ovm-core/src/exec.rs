//! Running a program with a time limit, its output pipes drained while it runs (a full pipe would
//! stall it until the limit). Storage and power plug-ins run this way.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a run went wrong before the program's own verdict.
#[derive(Debug)]
pub(crate) enum ExecError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// Waiting for it failed.
    Wait(std::io::Error),
    /// It did not finish within the limit (it was killed).
    TimedOut,
}

/// What a finished program left.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` (its standard input is `/dev/null`) for at most `limit`; at most `cap` bytes of each
/// output are kept.
pub(crate) fn run_limited(mut cmd: Command, limit: Duration, cap: u64) -> Result<Finished, ExecError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A program just written may still be open for writing in a child another thread forked
    // (ETXTBSY) for a moment: try again briefly.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 10 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(ExecError::Spawn(e)),
        }
    };
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(r) = r {
                let mut r = r;
                let _ = r.by_ref().take(cap).read_to_end(&mut kept);
                // The rest is read and dropped, so the program never blocks on a full pipe.
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    };
    let out_t = drain(child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>));
    let err_t = drain(child.stderr.take().map(|e| Box::new(e) as Box<dyn Read + Send>));
    let t0 = Instant::now();
    let status = loop {
        match child.try_wait().map_err(ExecError::Wait)? {
            Some(s) => break s,
            None if t0.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::TimedOut);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Ok(Finished {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}
