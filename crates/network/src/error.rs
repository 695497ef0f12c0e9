use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("create pod namespaces: {0}")]
    Namespace(String),
    #[error("bring up lo in the pod's network namespace: {step}: {source}")]
    Loopback { step: &'static str, source: std::io::Error },
    #[error("no CNI network config in {dir}")]
    NoConfig { dir: PathBuf },
    #[error("CNI config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginMissing { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} {command} failed: {message}")]
    Plugin { plugin: String, command: &'static str, message: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl berth_error_kind::HasKind for Error {
    fn kind(&self) -> berth_error_kind::ErrorKind {
        use berth_error_kind::ErrorKind as K;
        match self {
            // The node's CNI setup: an operator must act.
            Error::NoConfig { .. } | Error::BadConfig { .. } | Error::PluginMissing { .. } => K::FailedPrecondition,
            Error::Io { source, .. } => berth_error_kind::io_kind(source),
            Error::Namespace(_) | Error::Loopback { .. } | Error::Plugin { .. } => K::Internal,
        }
    }
}
