//! The one place berth's errors become gRPC statuses. Handlers return
//! [`Error`]. A check of berthd's own (a bad field, a wrong state) is a
//! message variant whose text names the object and the offending field; a
//! failure of a library berth calls is [`Error::Caused`], which keeps that
//! error as its `source()` and takes its kind from it ([`HasKind`]). Kinds
//! become gRPC codes in [`Error::code`], and [`logged`] logs every failed
//! call of the RuntimeService, the ImageService and the admin API alike.

use berth_error_kind::{ErrorKind, HasKind};
use containerd_shim_protos::ttrpc;
use tonic::{Code, Status};

use crate::shim_client::ShimError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// A library's failure, its cause kept; `context` says what berthd was
    /// doing ("" when the cause says it all).
    #[error("{}{source}", prefix(.context))]
    Caused { kind: ErrorKind, context: String, source: Box<dyn std::error::Error + Send + Sync> },
}

fn prefix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!("{context}: ")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A library error, its kind its own.
    pub fn caused<E: HasKind + Send + Sync + 'static>(e: E) -> Error {
        Error::Caused { kind: e.kind(), context: String::new(), source: Box::new(e) }
    }

    /// An I/O failure while doing `what`, its cause kept (a full disk is
    /// ResourceExhausted).
    pub fn io<E: Into<std::io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> Error {
        let what = what.into();
        move |e| Error::from(e.into()).context(what)
    }

    /// A failure of anything else berthd calls while doing `what`: Internal,
    /// its cause kept.
    pub fn internal<E: std::error::Error + Send + Sync + 'static>(what: impl Into<String>) -> impl FnOnce(E) -> Error {
        let what = what.into();
        move |e| Error::Caused { kind: ErrorKind::Internal, context: what, source: Box::new(e) }
    }

    /// The gRPC code the caller gets.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
            Error::Caused { kind, .. } => code_of(*kind),
        }
    }

    /// The same kind, with `context` in front of the message.
    pub fn context(self, context: impl std::fmt::Display) -> Error {
        let wrap = |m: String| format!("{context}: {m}");
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(wrap(m)),
            Error::NotFound(m) => Error::NotFound(wrap(m)),
            Error::AlreadyExists(m) => Error::AlreadyExists(wrap(m)),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(wrap(m)),
            Error::Unimplemented(m) => Error::Unimplemented(wrap(m)),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(wrap(m)),
            Error::Unavailable(m) => Error::Unavailable(wrap(m)),
            Error::Internal(m) => Error::Internal(wrap(m)),
            Error::Caused { kind, context: inner, source } => {
                Error::Caused { kind, context: if inner.is_empty() { context.to_string() } else { wrap(inner) }, source }
            }
        }
    }
}

fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// Logs a failed call once, at a level by what it means for the node:
/// berth's own failures (Internal, Unavailable, ResourceExhausted) are
/// errors, a caller's mistake or a refused state is info, and NotFound on
/// a polling call (`quiet`) only debug. The RuntimeService, the
/// ImageService and the admin API all answer through it.
pub(crate) fn logged<T>(rpc: &'static str, quiet: bool, result: Result<T, Status>) -> Result<T, Status> {
    match &result {
        Ok(_) if quiet => tracing::trace!(rpc, "ok"),
        Ok(_) => tracing::debug!(rpc, "ok"),
        Err(status) => match status.code() {
            Code::NotFound if quiet => tracing::debug!(rpc, code = ?status.code(), error = status.message(), "failed"),
            Code::Internal | Code::Unavailable | Code::ResourceExhausted | Code::Unknown | Code::DataLoss => {
                tracing::error!(rpc, code = ?status.code(), error = status.message(), "failed")
            }
            _ => tracing::info!(rpc, code = ?status.code(), error = status.message(), "failed"),
        },
    }
    result
}

impl From<berth_store::Error> for Error {
    fn from(e: berth_store::Error) -> Error {
        Error::caused(e)
    }
}

impl HasKind for ShimError {
    fn kind(&self) -> ErrorKind {
        match self {
            ShimError::Rpc { code, .. } => match *code {
                ttrpc::Code::INVALID_ARGUMENT => ErrorKind::InvalidArgument,
                ttrpc::Code::NOT_FOUND => ErrorKind::NotFound,
                ttrpc::Code::ALREADY_EXISTS => ErrorKind::AlreadyExists,
                ttrpc::Code::FAILED_PRECONDITION => ErrorKind::FailedPrecondition,
                ttrpc::Code::DEADLINE_EXCEEDED => ErrorKind::DeadlineExceeded,
                ttrpc::Code::RESOURCE_EXHAUSTED => ErrorKind::ResourceExhausted,
                _ => ErrorKind::Internal,
            },
            ShimError::Start { .. } => ErrorKind::Internal,
            // The shim's socket is gone or answers nothing.
            ShimError::Transport(..) => ErrorKind::Unavailable,
        }
    }
}

impl From<ShimError> for Error {
    fn from(e: ShimError) -> Error {
        match &e {
            // The one code the kinds do not have: a Task API call this
            // shim does not serve.
            ShimError::Rpc { code: ttrpc::Code::UNIMPLEMENTED, .. } => Error::Unimplemented(e.to_string()),
            _ => Error::caused(e),
        }
    }
}

impl From<berth_snapshot::Error> for Error {
    fn from(e: berth_snapshot::Error) -> Error {
        Error::caused(e)
    }
}

impl From<berth_network::Error> for Error {
    fn from(e: berth_network::Error) -> Error {
        Error::caused(e).context("pod network")
    }
}

impl From<berth_oci::container::SpecError> for Error {
    fn from(e: berth_oci::container::SpecError) -> Error {
        Error::InvalidArgument(format!("config.{e}"))
    }
}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        Error::caused(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Caused { kind: berth_error_kind::io_kind(&e), context: String::new(), source: Box::new(e) }
    }
}

/// Runs blocking work (mounts, fsync, cgroupfs) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::internal("blocking task"))?
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_library_failure_keeps_its_cause_and_its_kind() {
        let full = berth_store::Error::Io {
            op: "write",
            path: "/var/lib/berth/containers/c1/container.json".into(),
            source: std::io::Error::from_raw_os_error(nix::libc::ENOSPC),
        };
        let e = Error::from(full).context("save container c1");
        assert_eq!(e.code(), Code::ResourceExhausted, "a full disk is not Internal");
        let cause = e.source().expect("the store's error is kept as the source");
        assert!(cause.downcast_ref::<berth_store::Error>().is_some(), "{cause:?}");
        assert!(cause.source().is_some_and(|io| io.to_string().contains("No space left")), "and its own cause");
        let status = Status::from(e);
        assert_eq!(status.message(), "save container c1: write /var/lib/berth/containers/c1/container.json: No space left on device (os error 28)");
    }

    #[test]
    fn kinds_become_the_codes_a_client_acts_on() {
        let taken = berth_store::Error::NameTaken { name: "web".into(), holder: "c1".into() };
        assert_eq!(Error::from(taken).code(), Code::AlreadyExists);
        assert_eq!(Error::from(berth_image::Error::UnknownImage("busybox".into())).code(), Code::NotFound);
        let missing = berth_network::Error::NoConfig { dir: "/etc/cni/net.d".into() };
        let e = Error::from(missing);
        assert_eq!((e.code(), e.to_string().as_str()), (Code::FailedPrecondition, "pod network: no CNI network config in /etc/cni/net.d"));
        assert_eq!(Error::from(ShimError::Transport("broken pipe".into(), "c1".into())).code(), Code::Unavailable);
        let unimplemented = ShimError::Rpc { id: "c1".into(), status: "no".into(), code: ttrpc::Code::UNIMPLEMENTED };
        assert_eq!(Error::from(unimplemented).code(), Code::Unimplemented);
        assert_eq!(Error::from(std::io::Error::from_raw_os_error(nix::libc::EIO)).code(), Code::Internal);
        // Context on context reads outside in.
        let e = Error::from(berth_snapshot::Error::NotFound("k".into())).context("layer").context("create container c1");
        assert_eq!((e.code(), e.to_string().as_str()), (Code::NotFound, "create container c1: layer: snapshot \"k\" not found"));
    }
}
