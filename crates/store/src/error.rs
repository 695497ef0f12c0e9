use std::{io, path::PathBuf};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("record {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("record {path} has version {found}, this berth reads up to {supported}")]
    TooNew { path: PathBuf, found: u32, supported: u32 },
    #[error("name {name:?} is reserved by {holder}")]
    NameTaken { name: String, holder: String },
    #[error("invalid id {0:?}: ids are 1-128 characters of [A-Za-z0-9_.-], not starting with '.'")]
    InvalidId(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

impl berth_error_kind::HasKind for Error {
    fn kind(&self) -> berth_error_kind::ErrorKind {
        use berth_error_kind::ErrorKind as K;
        match self {
            Error::NameTaken { .. } => K::AlreadyExists,
            Error::InvalidId(_) => K::InvalidArgument,
            Error::Io { source, .. } => berth_error_kind::io_kind(source),
            // A record berth cannot read is berth's to fix, not the caller's.
            Error::Corrupt { .. } | Error::TooNew { .. } => K::Internal,
        }
    }
}
