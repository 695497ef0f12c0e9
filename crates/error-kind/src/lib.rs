//! The kinds of failure berth's library crates report. Each library's
//! error type keeps its own variants and causes (`source()`), and says
//! which of these kinds it is through [`HasKind`]; berthd maps kinds to
//! gRPC codes in one place (`berth_cri::error`), so the RuntimeService,
//! the ImageService and the admin API answer a failure alike.

/// What the caller can do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// What was named does not exist.
    NotFound,
    /// The request itself is wrong: asking again fails the same way.
    InvalidArgument,
    /// The name or object is already taken.
    AlreadyExists,
    /// The request is fine, the state of the node or object is not
    /// (a stopped pod, a misconfigured registry, a bad image): an
    /// operator or another call must act first.
    FailedPrecondition,
    /// Out of disk, memory or ids.
    ResourceExhausted,
    /// Credentials are missing or refused.
    Unauthenticated,
    /// Something berth depends on did not answer; asking again may work.
    Unavailable,
    /// The caller's deadline or berth's own time limit passed.
    DeadlineExceeded,
    /// A bug, or a host failure nothing above can act on.
    Internal,
}

/// Implemented by every library error berthd turns into an answer.
pub trait HasKind: std::error::Error {
    fn kind(&self) -> ErrorKind;
}

/// The kind of an I/O error on berth's own files: a full disk is
/// ResourceExhausted, a timeout DeadlineExceeded, the rest Internal. A
/// missing file is Internal too: what a caller names is looked up by berth
/// (NotFound then comes from that lookup), so a file gone from under berth
/// is berth's failure, not the caller's.
pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::StorageFull | Io::QuotaExceeded => ErrorKind::ResourceExhausted,
        Io::TimedOut => ErrorKind::DeadlineExceeded,
        _ if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => ErrorKind::ResourceExhausted,
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified_by_what_the_caller_can_do() {
        assert_eq!(io_kind(&std::io::Error::from_raw_os_error(libc::ENOSPC)), ErrorKind::ResourceExhausted);
        assert_eq!(io_kind(&std::io::Error::from_raw_os_error(libc::EDQUOT)), ErrorKind::ResourceExhausted);
        assert_eq!(io_kind(&std::io::Error::from_raw_os_error(libc::ENOENT)), ErrorKind::Internal);
        assert_eq!(io_kind(&std::io::Error::from_raw_os_error(libc::EIO)), ErrorKind::Internal);
    }
}
