//! The threads a service runs requests and subscriptions on: kept and reused, so a request does not
//! pay for a new thread (on a busy host the scheduler queues a new thread behind the running ones,
//! which costs milliseconds), and grown on demand, so a long wait never holds up another request.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::sync::lock;

type Task = Box<dyn FnOnce() + Send + 'static>;

/// How long an idle thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    /// Threads waiting for a task.
    idle: usize,
    /// Threads alive.
    threads: usize,
}

/// A pool of threads with no fixed size: every task starts at once, on an idle thread or a new one.
#[derive(Clone, Default)]
pub(crate) struct Workers {
    inner: Arc<(Mutex<Queue>, Condvar)>,
}

impl Workers {
    /// Runs `task` on a thread of the pool. An error only when no idle thread was left and a new
    /// one could not be started; the task is then not run.
    pub(crate) fn run(&self, task: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let (m, cv) = &*self.inner;
        let mut q = lock(m);
        q.tasks.push_back(Box::new(task));
        // Each idle thread takes one queued task: start a thread for every task beyond them.
        if q.tasks.len() <= q.idle {
            cv.notify_one();
            return Ok(());
        }
        let inner = self.inner.clone();
        match std::thread::Builder::new().name("ovm-request".into()).spawn(move || work(&inner)) {
            Ok(_) => {
                q.threads += 1;
                Ok(())
            }
            Err(e) => {
                q.tasks.pop_back();
                Err(e)
            }
        }
    }

    /// Threads alive now (idle or busy).
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        lock(&self.inner.0).threads
    }
}

fn work(inner: &(Mutex<Queue>, Condvar)) {
    let (m, cv) = inner;
    let mut q = lock(m);
    loop {
        if let Some(task) = q.tasks.pop_front() {
            drop(q);
            task();
            q = lock(m);
            continue;
        }
        q.idle += 1;
        let (g, timeout) = cv.wait_timeout(q, IDLE).unwrap_or_else(|p| p.into_inner());
        q = g;
        q.idle -= 1;
        if timeout.timed_out() && q.tasks.is_empty() {
            q.threads -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn tasks_run_at_once_and_threads_are_reused() {
        let w = Workers::default();
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            w.run(move || tx.send(i).unwrap()).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), i);
            // Let the thread go back to waiting before the next task.
            while lock(&w.inner.0).idle == 0 {
                std::thread::yield_now();
            }
        }
        assert_eq!(w.threads(), 1, "one task at a time needs one thread");
    }

    #[test]
    fn a_blocked_task_does_not_hold_up_the_next() {
        let w = Workers::default();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let d = done_tx.clone();
        w.run(move || {
            release_rx.recv().unwrap();
            d.send("first").unwrap();
        })
        .unwrap();
        for _ in 0..3 {
            let d = done_tx.clone();
            w.run(move || d.send("other").unwrap()).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), "other");
        }
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), "first");
        assert!(w.threads() >= 2);
    }
}
