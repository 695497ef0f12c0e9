//! Paths inside a running container, resolved so that nothing can lead
//! out of it: the container's root is `/proc/<pid>/root` of its init (its
//! own mount namespace's view, volumes included), and every path is
//! resolved against it by `openat2(RESOLVE_IN_ROOT)`, which treats that
//! directory as `/` for absolute symlinks and `..` alike. Below a resolved
//! directory, entries are opened one name at a time with `O_NOFOLLOW`
//! (`*at` calls on the parent's fd), so a symlink is read as a link and
//! never followed, on the host or in the container.

use std::{
    ffi::OsStr,
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::{Component, Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag},
    sys::stat::Mode,
};

use crate::error::{Error, Result};

/// The container's root directory, as its processes see it. The caller
/// checks the container still runs after this returned (the pid could
/// have been reused in between); the fd then pins that root.
pub(super) fn container_root(pid: u32) -> Result<OwnedFd> {
    let path = format!("/proc/{pid}/root");
    nix::fcntl::open(path.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::FailedPrecondition(format!("the container's root ({path}): {e}")))
}

/// A directory inside `root`, every symlink on the way resolved inside it.
pub(super) fn open_dir(root: &OwnedFd, path: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, relative(path).as_path(), how)
}

/// `path` made relative to the root (`/a/b` -> `a/b`, `/` -> `.`).
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path.components().filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_))).collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// `path` split into its parent directory and last name; `None` for the
/// root itself (or a path ending in `..`, which names no entry).
pub(super) fn split(path: &Path) -> Option<(PathBuf, &OsStr)> {
    match path.components().next_back()? {
        Component::Normal(name) => Some((path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/")), name)),
        _ => None,
    }
}

/// A child of `dir`, opened without following a symlink.
pub(super) fn open_child(dir: &OwnedFd, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    openat(dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// A name from an archive: one plain path component, nothing else.
pub(super) fn plain_name(name: &OsStr) -> Result<&OsStr> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(Error::InvalidArgument(format!("archive entry name {:?} is not a plain name", name)));
    }
    Ok(name)
}

/// An errno as berth's error, naming what was being done.
pub(super) fn io_error(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> Error {
    move |e| match e {
        Errno::ENOENT => Error::NotFound(format!("{what}: no such file or directory")),
        Errno::ENOTDIR => Error::FailedPrecondition(format!("{what}: not a directory")),
        Errno::ELOOP => Error::FailedPrecondition(format!("{what}: a symlink where a directory was expected")),
        Errno::EISDIR => Error::FailedPrecondition(format!("{what}: is a directory")),
        other => Error::io(what.to_string())(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_and_split() {
        assert_eq!(relative(Path::new("/")), PathBuf::from("."));
        assert_eq!(relative(Path::new("/a/b")), PathBuf::from("a/b"));
        assert_eq!(split(Path::new("/a/b")), Some((PathBuf::from("/a"), OsStr::new("b"))));
        assert_eq!(split(Path::new("/b")), Some((PathBuf::from("/"), OsStr::new("b"))));
        assert_eq!(split(Path::new("/")), None);
        assert!(plain_name(OsStr::new("..")).is_err() && plain_name(OsStr::new("a/b")).is_err() && plain_name(OsStr::new("ok")).is_ok());
    }

    /// A symlink to an absolute path inside the root leads to the root's
    /// file, never the host's.
    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::create_dir_all(root.path().join("data")).unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("data/link")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.path().join("data/up")).unwrap();
        let fd = nix::fcntl::open(root.path(), OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let inside = open_dir(&fd, Path::new("/data/link")).unwrap();
        let through = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&inside))).unwrap();
        assert_eq!(through, root.path().join("etc"));
        let up = open_dir(&fd, Path::new("/data/up")).unwrap();
        let through = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&up))).unwrap();
        assert_eq!(through, root.path());
    }
}
