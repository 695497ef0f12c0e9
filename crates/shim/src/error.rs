//! Errors of the Task service, each with the ttrpc code the client sees.

use berth_shim_protocol::ErrorKind;
use ttrpc::Code;

pub type Result<T> = std::result::Result<T, ShimError>;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

impl ShimError {
    pub fn code(&self) -> Code {
        match self {
            ShimError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ShimError::NotFound(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ShimError::DeadlineExceeded(_) => Code::DEADLINE_EXCEEDED,
            ShimError::Internal(_) => Code::INTERNAL,
        }
    }

    /// An error reported by the container init, keeping its classification.
    pub fn from_init(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::InvalidArgument => ShimError::InvalidArgument(message),
            ErrorKind::Internal => ShimError::Internal(message),
        }
    }

    pub fn internal(context: &str) -> impl FnOnce(std::io::Error) -> ShimError + '_ {
        move |e| ShimError::Internal(format!("{context}: {e}"))
    }
}

impl From<berth_cgroups::Error> for ShimError {
    fn from(e: berth_cgroups::Error) -> Self {
        if e.is_invalid_input() {
            ShimError::InvalidArgument(format!("cgroup: {e}"))
        } else {
            ShimError::Internal(format!("cgroup: {e}"))
        }
    }
}

impl From<berth_shim_protocol::Error> for ShimError {
    fn from(e: berth_shim_protocol::Error) -> Self {
        ShimError::Internal(format!("talk to berth-runtime: {e}"))
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}
