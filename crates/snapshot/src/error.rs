use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    #[error("snapshot {key:?}: {reason}")]
    FailedPrecondition { key: String, reason: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] berth_store::Error),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

impl berth_error_kind::HasKind for Error {
    fn kind(&self) -> berth_error_kind::ErrorKind {
        use berth_error_kind::ErrorKind as K;
        match self {
            Error::NotFound(_) => K::NotFound,
            Error::AlreadyExists(_) => K::AlreadyExists,
            Error::FailedPrecondition { .. } => K::FailedPrecondition,
            Error::Io { source, .. } => berth_error_kind::io_kind(source),
            Error::Store(e) => e.kind(),
        }
    }
}
