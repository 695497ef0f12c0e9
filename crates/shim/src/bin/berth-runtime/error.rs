//! Errors of `berth-runtime`, classified as the shim answers them: the
//! kind travels to the shim with the message (`InitMessage::Error`).

use berth_container::{sync::InitMessage, ErrorKind};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request or the spec asks for something impossible.
    #[error("{0}")]
    InvalidArgument(String),
    /// The host failed.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The message the shim reads (on the channel, or on stdout).
    pub fn to_message(&self) -> InitMessage {
        InitMessage::Error { kind: self.kind(), message: self.to_string() }
    }
}

impl From<berth_cgroups::Error> for Error {
    fn from(e: berth_cgroups::Error) -> Self {
        if e.is_invalid_input() {
            Error::InvalidArgument(format!("cgroup: {e}"))
        } else {
            Error::Internal(format!("cgroup: {e}"))
        }
    }
}

impl From<berth_shim_protocol::Error> for Error {
    fn from(e: berth_shim_protocol::Error) -> Self {
        Error::Internal(format!("talk to berth-shim: {e}"))
    }
}

impl From<berth_container::Error> for Error {
    fn from(e: berth_container::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidArgument => Error::InvalidArgument(e.to_string()),
            ErrorKind::Internal => Error::Internal(e.to_string()),
        }
    }
}
