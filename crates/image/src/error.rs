use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer entry {path:?} escapes the layer: {reason}")]
    Escape { path: PathBuf, reason: String },
    #[error("layer entry {path:?}: {source}")]
    Entry { path: PathBuf, source: std::io::Error },
    #[error("read layer: {0}")]
    Read(std::io::Error),
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {expected}: expected {expected_size} bytes, got {actual_size}")]
    SizeMismatch { expected: String, expected_size: u64, actual_size: u64 },
    #[error("invalid digest {0:?}: berth stores sha256:<64 hex> digests")]
    InvalidDigest(String),
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("pull {reference}: {source}")]
    Registry { reference: String, kind: RegistryErrorKind, source: Box<crate::RegistryError> },
    #[error("push {reference}: {source}")]
    Push { reference: String, kind: RegistryErrorKind, source: Box<crate::RegistryError> },
    #[error("no image {0:?} in the store")]
    UnknownImage(String),
    #[error("registry credentials file {path}: {reason}")]
    AuthFile { path: PathBuf, reason: String },
    #[error("bad image: {0}")]
    BadImage(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

impl Error {
    /// The filesystem under the stores is full (ENOSPC, or EDQUOT). The
    /// tar crate wraps such errors with context but keeps their kind.
    pub fn is_disk_full(&self) -> bool {
        let io = match self {
            Error::Entry { source, .. } | Error::Io { source, .. } | Error::Read(source) => source,
            _ => return false,
        };
        matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
            || matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }

    /// A short stable word for what went wrong, for metrics labels
    /// (`berth_image_pull_failures_total{cause}`).
    pub fn cause(&self) -> &'static str {
        if self.is_disk_full() {
            return "disk_full";
        }
        match self {
            Error::InvalidReference { .. } | Error::InvalidDigest(_) => "invalid_reference",
            Error::Registry { kind: RegistryErrorKind::Unauthorized, .. } | Error::Push { kind: RegistryErrorKind::Unauthorized, .. } => "unauthorized",
            Error::Registry { kind: RegistryErrorKind::NotFound, .. } | Error::Push { kind: RegistryErrorKind::NotFound, .. } | Error::UnknownImage(_) => {
                "not_found"
            }
            Error::Registry { kind: RegistryErrorKind::Misconfigured, .. } | Error::Push { kind: RegistryErrorKind::Misconfigured, .. } => {
                "registry_misconfigured"
            }
            Error::Registry { kind: RegistryErrorKind::Unavailable, .. } | Error::Push { kind: RegistryErrorKind::Unavailable, .. } => "registry_unavailable",
            Error::Registry { kind: RegistryErrorKind::Refused, .. } | Error::Push { kind: RegistryErrorKind::Refused, .. } => "bad_image",
            Error::AuthFile { .. } => "auth_file",
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => "corrupt_content",
            Error::Escape { .. } | Error::BadImage(_) => "bad_image",
            _ => "internal",
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

impl berth_error_kind::HasKind for Error {
    fn kind(&self) -> berth_error_kind::ErrorKind {
        use berth_error_kind::ErrorKind as K;
        if self.is_disk_full() {
            return K::ResourceExhausted;
        }
        match self {
            Error::InvalidReference { .. } | Error::InvalidDigest(_) => K::InvalidArgument,
            Error::UnknownImage(_) => K::NotFound,
            Error::AuthFile { .. } => K::FailedPrecondition,
            Error::Registry { kind, .. } | Error::Push { kind, .. } => match kind {
                RegistryErrorKind::Unauthorized => K::Unauthenticated,
                RegistryErrorKind::NotFound => K::NotFound,
                // Not Unavailable, which tells a client to retry: TLS set up
                // wrong (an unknown CA, a missing client certificate, http
                // against https) fails the same way until an operator acts.
                RegistryErrorKind::Misconfigured => K::FailedPrecondition,
                RegistryErrorKind::Unavailable => K::Unavailable,
                // Like a bad image: asking again gets the same manifest.
                RegistryErrorKind::Refused => K::FailedPrecondition,
            },
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } | Error::Escape { .. } | Error::BadImage(_) => K::FailedPrecondition,
            Error::Entry { .. } | Error::Read(_) | Error::Io { .. } | Error::Snapshot(_) => K::Internal,
        }
    }
}

/// What a registry's refusal means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// 401/403, or credentials refused.
    Unauthorized,
    /// The repository, tag, manifest or blob does not exist.
    NotFound,
    /// TLS cannot work as things are set up, on either side: the server's
    /// certificate chains to no CA this node trusts, names another host or
    /// has expired; the server wants a client certificate or refused ours;
    /// it speaks plain http to an https client (or the reverse); a file in
    /// the host's certs.d directory is unusable. Retrying changes nothing
    /// until an operator does.
    Misconfigured,
    /// The registry served a manifest berth will not read: over the size
    /// limit, of a type that is not an image manifest or index, with a
    /// Content-Type its body contradicts, or malformed. The same request
    /// gets the same answer, so retrying is no use.
    Refused,
    /// Anything else: unreachable, 5xx, stalled, malformed answers.
    Unavailable,
}

impl RegistryErrorKind {
    pub(crate) fn of(e: &crate::RegistryError) -> Self {
        use crate::RegistryError as E;
        use oci_client::errors::OciErrorCode as C;
        match e {
            E::Token { status: Some(500..=599), .. } => Self::Unavailable,
            E::Status { status: 401 | 403, .. } | E::Token { .. } => Self::Unauthorized,
            E::Status { status: 404, .. } | E::NoPlatform { .. } => Self::NotFound,
            E::Status { code: Some(C::Unauthorized | C::Denied), .. } => Self::Unauthorized,
            E::Status { code: Some(C::ManifestUnknown | C::BlobUnknown | C::NameUnknown | C::NotFound | C::ManifestBlobUnknown), .. } => Self::NotFound,
            E::Tls { .. } | E::HttpsOnly { .. } | E::HttpsFailed { .. } | E::Certs { .. } => Self::Misconfigured,
            E::TooLarge { .. } | E::ManifestType { .. } | E::BadManifest { .. } => Self::Refused,
            _ => Self::Unavailable,
        }
    }
}
