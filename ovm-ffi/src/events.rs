//! Events and the change feed: raise, list, acknowledge, poll by token, and subscribe with a callback.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ovm_core::manager::LostEvents;
use ovm_core::model::{ChangeOp, EventId, ObjectRef, Severity};
use ovm_core::remote::ChangeStream;
use ovm_core::store::EventFilter;
use ovm_core::Error;

use crate::boundary::{
    copy_out_checked, id_arg, job_entry, opt_id_arg, out_arg, put, put_json, str_arg, to_json, with_mgr,
};
use crate::handles::{ovm_job, ovm_manager, SubscriptionThread};
use crate::objects::{kind_arg, kind_code};
use crate::result::{ovm_result, FfiError};

/// Event severities.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_severity {
    /// Informational.
    OVM_SEVERITY_INFO = 0,
    /// Warning.
    OVM_SEVERITY_WARNING = 1,
    /// Error: blocks operations on the object until acknowledged.
    OVM_SEVERITY_ERROR = 2,
    /// Critical: blocks operations on the object until acknowledged.
    OVM_SEVERITY_CRITICAL = 3,
}

fn severity_arg(s: u32) -> Result<Severity, FfiError> {
    Ok(match s {
        0 => Severity::Info,
        1 => Severity::Warning,
        2 => Severity::Error,
        3 => Severity::Critical,
        _ => {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_ENUM,
                format!("{s} is not an ovm_severity"),
            ))
        }
    })
}

/// What a change-feed entry says happened.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ovm_change_op {
    /// The object was created.
    OVM_CHANGE_ADDED = 0,
    /// The object changed.
    OVM_CHANGE_MODIFIED = 1,
    /// The object was deleted.
    OVM_CHANGE_REMOVED = 2,
    /// The subscriber fell behind: `token` is the resume token; the missed changes follow.
    OVM_CHANGE_EVENTS_LOST = 3,
}

/// One change delivered to a subscription callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ovm_change {
    /// Token of the change (for `OVM_CHANGE_EVENTS_LOST`: the token to resume after).
    pub token: u64,
    /// An `ovm_change_op`.
    pub op: u32,
    /// An `ovm_object_kind` (unset for `OVM_CHANGE_EVENTS_LOST`).
    pub kind: u32,
    /// The object's id, NUL-terminated (empty for `OVM_CHANGE_EVENTS_LOST`).
    pub object_id: [c_char; 37],
}

/// Called for each change, on the subscription's own thread. `change` is valid during the call only.
pub type ovm_change_callback = Option<unsafe extern "C" fn(userdata: *mut c_void, change: *const ovm_change)>;

/// Called once with `userdata` when the subscription ends.
pub type ovm_free_userdata = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Raise an event about an object (e.g. from a console plugin). Error and Critical events block
/// mutating operations on the object until acknowledged. Writes the new event's id into `buf`.
#[no_mangle]
pub unsafe extern "C" fn ovm_event_raise(
    mgr: *const ovm_manager,
    kind: u32,
    object_id: *const c_char,
    severity: u32,
    event_type: *const c_char,
    summary: *const c_char,
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let kind = kind_arg(kind)?;
        let sev = severity_arg(severity)?;
        let (id, t, s) = (
            id_arg(object_id, "object_id")?,
            str_arg(event_type, "event_type")?,
            str_arg(summary, "summary")?,
        );
        out_arg(out_n, "out_n")?;
        let e = m.local_only("ovm_event_raise")?.raise_event(ObjectRef::new(kind, id), sev, t, s)?;
        copy_out_checked(&e.id.to_string(), buf, len, out_n)
    })
}

/// Events as a JSON array, newest first: of `object_id` (NULL: all), at least `min_severity`,
/// only unacknowledged ones if `unacknowledged_only`, at most `limit` (0: all).
#[no_mangle]
pub unsafe extern "C" fn ovm_event_list_json(
    mgr: *const ovm_manager,
    object_id: *const c_char,
    min_severity: u32,
    unacknowledged_only: bool,
    limit: usize,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let out = out_arg(out, "out")?;
        let object = opt_id_arg(object_id, "object_id")?;
        let f = EventFilter {
            object,
            min_severity: Some(severity_arg(min_severity)?),
            acknowledged: unacknowledged_only.then_some(false),
            limit: (limit > 0).then_some(limit),
            ..Default::default()
        };
        put_json(out, &m.api.events(f)?)
    })
}

/// Acknowledge an event. Returns a job.
#[no_mangle]
pub unsafe extern "C" fn ovm_event_acknowledge(
    mgr: *const ovm_manager,
    event_id: *const c_char,
    out: *mut *mut ovm_job,
) -> ovm_result {
    job_entry!(mgr, out, |m| m.acknowledge_event(EventId(id_arg(event_id, "event_id")?)))
}

/// The newest change token.
#[no_mangle]
pub unsafe extern "C" fn ovm_current_token(mgr: *const ovm_manager, out: *mut u64) -> ovm_result {
    with_mgr!(mgr, |m| {
        let out = out_arg(out, "out")?;
        let t = m.api.current_token()?;
        put(out, t);
        Ok(())
    })
}

/// Changes after `token` as a JSON array, oldest first; `*out_next` receives the token to pass next
/// time. If `token` is older than the retained feed, returns `OVM_RESULT_EVENTS_LOST` with the resume
/// token in `*out_next`: re-read the objects you track, then continue from it.
#[no_mangle]
pub unsafe extern "C" fn ovm_changes_since(
    mgr: *const ovm_manager,
    token: u64,
    out_json: *mut *mut c_char,
    out_next: *mut u64,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let out_json = out_arg(out_json, "out_json")?;
        let out_next = out_arg(out_next, "out_next")?;
        match m.api.events_since(token) {
            Ok((changes, next)) => {
                let s = to_json(&changes)?;
                put(out_json, s);
                put(out_next, next);
                Ok(())
            }
            Err(e @ Error::EventsLost { resume_token }) => {
                put(out_next, resume_token);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    })
}

struct SendPtr(*mut c_void);
// SAFETY: the pointer is only handed back to the caller's callback and finaliser, which the C API
// documents may run on the subscription's thread.
unsafe impl Send for SendPtr {}

fn fill(op: ovm_change_op, token: u64, kind: u32, id: &str) -> ovm_change {
    let mut c = ovm_change { token, op: op as u32, kind, object_id: [0; 37] };
    for (dst, b) in c.object_id.iter_mut().zip(id.bytes().take(36)) {
        *dst = b as c_char;
    }
    c
}

type ChangeFn = unsafe extern "C" fn(userdata: *mut c_void, change: *const ovm_change);

/// The loop of a subscription thread: every change to the callback until stopped or the manager ends,
/// then the finaliser.
fn deliver(
    mut sub: Box<dyn ChangeStream>,
    stop: &AtomicBool,
    cb: ChangeFn,
    ud: SendPtr,
    free_userdata: ovm_free_userdata,
) {
    let send = |ch: &ovm_change| {
        // SAFETY: the caller's callback, called with its userdata and a change valid for the call, on
        // this thread, as ovm_subscribe documents.
        let _ = std::panic::catch_unwind(|| unsafe { cb(ud.0, ch) });
    };
    while !stop.load(Ordering::SeqCst) {
        match sub.next_change(Duration::from_millis(100)) {
            Ok(Some(c)) => {
                let op = match c.op {
                    ChangeOp::Added => ovm_change_op::OVM_CHANGE_ADDED,
                    ChangeOp::Modified => ovm_change_op::OVM_CHANGE_MODIFIED,
                    ChangeOp::Removed => ovm_change_op::OVM_CHANGE_REMOVED,
                };
                send(&fill(op, c.token, kind_code(c.object.kind), &c.object.id.to_string()));
            }
            Ok(None) => {}
            // A notice in resuming mode: the missed changes follow.
            Err(Error::EventsLost { resume_token }) => {
                send(&fill(ovm_change_op::OVM_CHANGE_EVENTS_LOST, resume_token, u32::MAX, ""));
            }
            Err(_) => break,
        }
    }
    if let Some(f) = free_userdata {
        // SAFETY: the caller's finaliser, called once with its userdata.
        unsafe { f(ud.0) };
    }
}

/// Subscribe to the change feed. `callback(userdata, change)` runs on a thread of the subscription,
/// never while ovm holds an internal lock, for every change after `from_token` (if `replay`) or after
/// now. If the subscriber falls behind, it receives `OVM_CHANGE_EVENTS_LOST` with the resume token,
/// then the missed changes are replayed from the database. `free_userdata(userdata)` (may be NULL)
/// runs once when the subscription ends. `*out_id` receives the id for `ovm_unsubscribe`.
#[no_mangle]
pub unsafe extern "C" fn ovm_subscribe(
    mgr: *const ovm_manager,
    from_token: u64,
    replay: bool,
    callback: ovm_change_callback,
    userdata: *mut c_void,
    free_userdata: ovm_free_userdata,
    out_id: *mut u64,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let cb = callback.ok_or_else(|| crate::boundary::null("callback"))?;
        let out_id = out_arg(out_id, "out_id")?;
        // Core's resuming mode: after a lag the subscription replays the missed changes from the
        // database itself; the loss is reported to the callback as OVM_CHANGE_EVENTS_LOST first.
        let from = replay.then_some(from_token);
        let sub: Box<dyn ChangeStream> = match &m.local {
            Some(local) => Box::new(local.subscribe(from)?.on_lost(LostEvents::Resume)),
            None => m.api.subscribe_changes(from)?,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let ud = SendPtr(userdata);
        let thread = std::thread::Builder::new()
            .name("ovm-subscription".into())
            .spawn(move || deliver(sub, &stop2, cb, ud, free_userdata))
            .map_err(|e| {
                FfiError::new(
                    ovm_result::OVM_RESULT_INTERNAL,
                    format!("cannot start the subscription thread: {e}"),
                )
            })?;
        let id = {
            let mut n = m.next_sub.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        m.subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, SubscriptionThread { stop, thread: Some(thread) });
        put(out_id, id);
        Ok(())
    })
}

/// End a subscription: waits for a callback in progress, then runs `free_userdata`. Must not be
/// called from inside the subscription's own callback (`OVM_RESULT_INVALID_STATE`).
#[no_mangle]
pub unsafe extern "C" fn ovm_unsubscribe(mgr: *const ovm_manager, id: u64) -> ovm_result {
    with_mgr!(mgr, |m| {
        let mut subs = m.subs.lock().unwrap_or_else(|p| p.into_inner());
        let same_thread = subs
            .get(&id)
            .and_then(|s| s.thread.as_ref())
            .is_some_and(|t| t.thread().id() == std::thread::current().id());
        if same_thread {
            return Err(FfiError::new(
                ovm_result::OVM_RESULT_INVALID_STATE,
                "ovm_unsubscribe called from its own callback",
            ));
        }
        let s = subs.remove(&id).ok_or_else(|| {
            FfiError::new(ovm_result::OVM_RESULT_NOT_FOUND, format!("no subscription {id}"))
        })?;
        drop(subs);
        s.stop();
        Ok(())
    })
}

/// One event as JSON (owned: free with `ovm_string_free`).
#[no_mangle]
pub unsafe extern "C" fn ovm_event_get_json(
    mgr: *const ovm_manager,
    event_id: *const c_char,
    out: *mut *mut c_char,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = id_arg(event_id, "event_id")?;
        let out = out_arg(out, "out")?;
        let s = to_json(&m.api.event(EventId(id))?)?;
        put(out, s);
        Ok(())
    })
}

/// An event's severity (an `ovm_severity`) and whether it is acknowledged.
#[no_mangle]
pub unsafe extern "C" fn ovm_event_severity(
    mgr: *const ovm_manager,
    event_id: *const c_char,
    out_severity: *mut u32,
    out_acknowledged: *mut bool,
) -> ovm_result {
    with_mgr!(mgr, |m| {
        let id = id_arg(event_id, "event_id")?;
        let out_s = out_arg(out_severity, "out_severity")?;
        let out_a = out_arg(out_acknowledged, "out_acknowledged")?;
        let e = m.api.event(EventId(id))?;
        let s = match e.severity {
            Severity::Info => ovm_severity::OVM_SEVERITY_INFO,
            Severity::Warning => ovm_severity::OVM_SEVERITY_WARNING,
            Severity::Error => ovm_severity::OVM_SEVERITY_ERROR,
            Severity::Critical => ovm_severity::OVM_SEVERITY_CRITICAL,
        };
        put(out_s, s as u32);
        put(out_a, e.acknowledged.is_some());
        Ok(())
    })
}
