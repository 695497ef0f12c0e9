//! The one place berth's errors become gRPC statuses. Handlers return
//! [`Error`]; each variant is a kind, and its text names the object and the
//! offending field.

use containerd_shim_protos::ttrpc;
use tonic::Status;

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Unimplemented(m) => Status::unimplemented(m),
            Error::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Internal(m) => Status::internal(m),
        }
    }
}

impl From<berth_store::Error> for Error {
    fn from(e: berth_store::Error) -> Error {
        use berth_store::Error as E;
        match &e {
            E::NameTaken { .. } => Error::AlreadyExists(e.to_string()),
            E::InvalidId(_) => Error::InvalidArgument(e.to_string()),
            _ => Error::Internal(e.to_string()),
        }
    }
}

impl From<ShimError> for Error {
    fn from(e: ShimError) -> Error {
        let message = e.to_string();
        match e {
            ShimError::Rpc { code, .. } => match code {
                ttrpc::Code::INVALID_ARGUMENT => Error::InvalidArgument(message),
                ttrpc::Code::NOT_FOUND => Error::NotFound(message),
                ttrpc::Code::ALREADY_EXISTS => Error::AlreadyExists(message),
                ttrpc::Code::FAILED_PRECONDITION => Error::FailedPrecondition(message),
                ttrpc::Code::DEADLINE_EXCEEDED => Error::DeadlineExceeded(message),
                ttrpc::Code::UNIMPLEMENTED => Error::Unimplemented(message),
                _ => Error::Internal(message),
            },
            ShimError::Start { .. } => Error::Internal(message),
            ShimError::Transport(..) => Error::Unavailable(message),
        }
    }
}

impl From<berth_snapshot::Error> for Error {
    fn from(e: berth_snapshot::Error) -> Error {
        match &e {
            berth_snapshot::Error::NotFound(_) => Error::NotFound(e.to_string()),
            berth_snapshot::Error::FailedPrecondition { .. } => Error::FailedPrecondition(e.to_string()),
            _ => Error::Internal(e.to_string()),
        }
    }
}

impl From<berth_network::Error> for Error {
    fn from(e: berth_network::Error) -> Error {
        use berth_network::Error as E;
        match &e {
            E::NoConfig { .. } | E::BadConfig { .. } | E::PluginMissing { .. } => Error::FailedPrecondition(format!("pod network: {e}")),
            _ => Error::Internal(format!("pod network: {e}")),
        }
    }
}

impl From<berth_oci::container::SpecError> for Error {
    fn from(e: berth_oci::container::SpecError) -> Error {
        Error::InvalidArgument(format!("config.{e}"))
    }
}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        Error::Internal(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Internal(e.to_string())
    }
}

/// Runs blocking work (mounts, fsync, cgroupfs) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("blocking task: {e}")))?
}
