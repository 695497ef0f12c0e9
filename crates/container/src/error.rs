use std::{io, path::PathBuf};

pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong while building a container. Each variant names the thing
/// (path, namespace, syscall) so the message that reaches the kubelet is
/// actionable on its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("read spec {path}: {source}")]
    ReadSpec { path: PathBuf, source: io::Error },
    #[error("parse spec {path}: {source}")]
    ParseSpec { path: PathBuf, source: serde_json::Error },
    #[error("rootfs {path}: {reason}")]
    Rootfs { path: PathBuf, reason: String },
    #[error("{ns} namespace {path}: {source}")]
    Namespace { ns: String, path: PathBuf, source: nix::Error },
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },
    #[error("mount {source_path:?} on {target}: {source}")]
    Mount { source_path: String, target: PathBuf, source: nix::Error },
    #[error("exec {path:?}: {reason}")]
    Exec { path: String, reason: String },
    #[error("user: {0}")]
    User(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("capabilities: {0}")]
    Capabilities(String),
    #[error("sync with shim: {0}")]
    Sync(String),
}

/// Kind of failure, so the shim can pick a gRPC/ttrpc code without parsing
/// text: it travels in the init's messages.
pub use berth_shim_protocol::ErrorKind;

impl From<berth_shim_protocol::Error> for Error {
    fn from(e: berth_shim_protocol::Error) -> Self {
        Error::Sync(e.to_string())
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidSpec(_)
            | Error::ParseSpec { .. }
            | Error::Rootfs { .. }
            | Error::Exec { .. }
            | Error::User(_)
            | Error::Capabilities(_)
            | Error::Seccomp(_)
            | Error::Namespace { .. } => ErrorKind::InvalidArgument,
            Error::Mount { source: nix::Error::ENOENT | nix::Error::ENOTDIR, .. } => ErrorKind::InvalidArgument,
            Error::ReadSpec { source, .. } if source.kind() == io::ErrorKind::NotFound => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        }
    }

    pub fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let op = op.into();
        move |source| Error::Sys { op, source }
    }
}
