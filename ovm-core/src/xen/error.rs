//! The error type of the Xen driver's low layers.

use std::fmt;

/// An error string returned by xenstored in an `XS_ERROR` reply.
///
/// xenstored reports errors as the symbolic name of a POSIX errno value
/// (the `xsd_errors` table of Xen's `xs_wire.h`); unknown names are kept as
/// [`XsErrno::Other`] so a newer daemon never makes the client fail to parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XsErrno {
    /// `EINVAL`: invalid argument (bad path, bad permission string, ...).
    Einval,
    /// `EACCES`: permission denied.
    Eacces,
    /// `EEXIST`: the node already exists.
    Eexist,
    /// `EISDIR`: the node is a directory.
    Eisdir,
    /// `ENOENT`: no such node (or no such transaction).
    Enoent,
    /// `ENOMEM`: out of memory in xenstored.
    Enomem,
    /// `ENOSPC`: quota exceeded.
    Enospc,
    /// `EIO`: input/output error.
    Eio,
    /// `ENOTEMPTY`: directory not empty.
    Enotempty,
    /// `ENOSYS`: the operation is not implemented by this xenstored.
    Enosys,
    /// `EROFS`: read-only.
    Erofs,
    /// `EBUSY`: busy.
    Ebusy,
    /// `EAGAIN`: a transaction conflicted with another writer; retry it.
    Eagain,
    /// `EISCONN`: already connected.
    Eisconn,
    /// `E2BIG`: the request or reply is too large.
    E2big,
    /// `EPERM`: operation not permitted.
    Eperm,
    /// Any other error name reported by xenstored.
    Other(String),
}

impl XsErrno {
    /// Parses the symbolic error name of an `XS_ERROR` payload.
    pub fn from_name(name: &str) -> XsErrno {
        match name {
            "EINVAL" => XsErrno::Einval,
            "EACCES" => XsErrno::Eacces,
            "EEXIST" => XsErrno::Eexist,
            "EISDIR" => XsErrno::Eisdir,
            "ENOENT" => XsErrno::Enoent,
            "ENOMEM" => XsErrno::Enomem,
            "ENOSPC" => XsErrno::Enospc,
            "EIO" => XsErrno::Eio,
            "ENOTEMPTY" => XsErrno::Enotempty,
            "ENOSYS" => XsErrno::Enosys,
            "EROFS" => XsErrno::Erofs,
            "EBUSY" => XsErrno::Ebusy,
            "EAGAIN" => XsErrno::Eagain,
            "EISCONN" => XsErrno::Eisconn,
            "E2BIG" => XsErrno::E2big,
            "EPERM" => XsErrno::Eperm,
            other => XsErrno::Other(other.to_string()),
        }
    }

    /// The symbolic name, as it travels on the wire.
    pub fn name(&self) -> &str {
        match self {
            XsErrno::Einval => "EINVAL",
            XsErrno::Eacces => "EACCES",
            XsErrno::Eexist => "EEXIST",
            XsErrno::Eisdir => "EISDIR",
            XsErrno::Enoent => "ENOENT",
            XsErrno::Enomem => "ENOMEM",
            XsErrno::Enospc => "ENOSPC",
            XsErrno::Eio => "EIO",
            XsErrno::Enotempty => "ENOTEMPTY",
            XsErrno::Enosys => "ENOSYS",
            XsErrno::Erofs => "EROFS",
            XsErrno::Ebusy => "EBUSY",
            XsErrno::Eagain => "EAGAIN",
            XsErrno::Eisconn => "EISCONN",
            XsErrno::E2big => "E2BIG",
            XsErrno::Eperm => "EPERM",
            XsErrno::Other(s) => s,
        }
    }
}

impl fmt::Display for XsErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the Xen driver's low layers (xenstore client, privcmd hypercalls,
/// domain operations and the `xl` toolstack wrapper).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XenError {
    /// xenstored answered a request with an `XS_ERROR` reply.
    #[error("xenstore {op} {path:?}: {errno}")]
    Xenstore {
        /// The request type, e.g. `READ`.
        op: &'static str,
        /// The path (or other first argument) of the request.
        path: String,
        /// The error reported by xenstored.
        errno: XsErrno,
    },
    /// A reply or event from xenstored violates the wire protocol.
    #[error("xenstore protocol violation: {0}")]
    Protocol(String),
    /// A request would exceed the protocol limits (payload or path length).
    #[error("xenstore request too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// The size that was asked for.
        len: usize,
        /// The protocol limit.
        limit: usize,
    },
    /// The connection to xenstored is closed (or was lost while waiting).
    #[error("xenstore connection closed")]
    Disconnected,
    /// No xenstore transport could be opened.
    #[error("no xenstore transport available (tried {tried})")]
    NoTransport {
        /// The paths that were tried.
        tried: String,
    },
    /// A transaction kept conflicting after the allowed number of attempts.
    #[error("xenstore transaction still conflicting after {attempts} attempts")]
    TransactionConflict {
        /// How many times the transaction was tried.
        attempts: u32,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A hypercall returned an error.
    #[error("hypercall {op} failed: errno {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Hypercall {
        /// The hypercall (and sub-operation), e.g. `sysctl/physinfo`.
        op: &'static str,
        /// The (positive) errno value returned by Xen.
        errno: i32,
    },
    /// The hypervisor does not speak the sysctl/domctl interface version this
    /// build was written for.
    #[error(
        "unsupported Xen interface: {what} version {sent:#x} refused (this build speaks Xen {supported}; hypervisor is Xen {found})"
    )]
    InterfaceVersion {
        /// Which interface (`sysctl`, `domctl`).
        what: &'static str,
        /// The interface version that was sent.
        sent: u32,
        /// The Xen version this build supports.
        supported: &'static str,
        /// The Xen version the hypervisor reports.
        found: String,
    },
    /// An argument is invalid (empty path, bad domain id, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A domain does not exist.
    #[error("no such domain: {0}")]
    NoSuchDomain(u32),
    /// The Xen toolstack (`xl`) failed.
    #[error("xl {command} failed ({status}): {stderr}")]
    Toolstack {
        /// The xl sub-command.
        command: String,
        /// The exit status as text.
        status: String,
        /// What xl printed on stderr.
        stderr: String,
    },
}

impl XenError {
    /// The xenstore error name, if this is an `XS_ERROR` reply.
    pub fn xs_errno(&self) -> Option<&XsErrno> {
        match self {
            XenError::Xenstore { errno, .. } => Some(errno),
            _ => None,
        }
    }

    /// True if xenstored answered `EAGAIN` (a transaction must be retried).
    pub fn is_eagain(&self) -> bool {
        matches!(self.xs_errno(), Some(XsErrno::Eagain))
    }

    /// True if xenstored answered `ENOENT`.
    pub fn is_not_found(&self) -> bool {
        matches!(self.xs_errno(), Some(XsErrno::Enoent))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> XenError {
        XenError::Io { context: context.into(), source }
    }
}

/// Result alias of the Xen layers.
pub type XenResult<T> = Result<T, XenError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        for name in [
            "EINVAL",
            "EACCES",
            "EEXIST",
            "EISDIR",
            "ENOENT",
            "ENOMEM",
            "ENOSPC",
            "EIO",
            "ENOTEMPTY",
            "ENOSYS",
            "EROFS",
            "EBUSY",
            "EAGAIN",
            "EISCONN",
            "E2BIG",
            "EPERM",
        ] {
            let e = XsErrno::from_name(name);
            assert!(!matches!(e, XsErrno::Other(_)), "{name} is known");
            assert_eq!(e.name(), name);
        }
        assert_eq!(XsErrno::from_name("EWHATEVER"), XsErrno::Other("EWHATEVER".into()));
    }

    #[test]
    fn helpers_classify() {
        let e = XenError::Xenstore { op: "READ", path: "/x".into(), errno: XsErrno::Eagain };
        assert!(e.is_eagain());
        assert!(!e.is_not_found());
        assert!(e.to_string().contains("EAGAIN"));
        assert!(!XenError::Disconnected.is_eagain());
    }
}
