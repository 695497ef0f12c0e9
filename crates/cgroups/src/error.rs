use std::{io, path::PathBuf};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup path {0:?} is not a relative path below the hierarchy root")]
    InvalidPath(PathBuf),
    #[error("write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: io::Error },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("invalid resource {field}: {reason}")]
    InvalidResource { field: &'static str, reason: String },
    #[error("{controller} limit requested but the {controller} controller is not available")]
    MissingController { controller: &'static str },
    #[error("cannot detect cgroup hierarchy: {0}")]
    Detect(String),
    #[error("systemd cgroups path {path:?}: {reason}")]
    InvalidSystemdPath { path: String, reason: String },
    #[error("systemd refused unit {unit}: {message}")]
    Systemd { unit: String, message: String },
    #[error("D-Bus: {what}: {source}")]
    // A trait object, not zbus::Error: code that only reads cgroups (the
    // resident shim) then links none of zbus for this variant's drop and
    // Display. Boxed either way: zbus::Error is larger than the rest.
    Dbus { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
}

impl Error {
    /// True when the caller asked for something impossible (a bad value), as
    /// opposed to the host failing; the shim maps this to InvalidArgument.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::InvalidPath(_) | Error::InvalidResource { .. } | Error::MissingController { .. } | Error::InvalidSystemdPath { .. } => true,
            Error::Write { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::EINVAL) | Some(libc::ERANGE) | Some(libc::EBUSY))
            }
            _ => false,
        }
    }
}
