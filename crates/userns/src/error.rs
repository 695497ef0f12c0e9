use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {source}")]
    Sys { op: String, source: nix::Error },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("id map: {0}")]
    IdMap(String),
}

impl Error {
    pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let op = op.into();
        move |source| Error::Sys { op, source }
    }

    /// The errno behind the failure, when there is one.
    pub fn errno(&self) -> Option<nix::Error> {
        match self {
            Error::Sys { source, .. } => Some(*source),
            Error::Io { source, .. } => source.raw_os_error().map(nix::Error::from_raw),
            Error::IdMap(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
