//! Containers.CopyTo: a tar stream written into a running container
//! (`berthctl cp SRC CONTAINER:DEST`), on the blocking pool as it
//! arrives. The destination is resolved inside the container's root; each
//! entry is then made one name at a time below it with `O_NOFOLLOW`, so
//! neither a symlink in the container nor one in the archive can lead a
//! write anywhere else. Owner, mode and mtime come from the archive.

use std::{
    ffi::{OsStr, OsString},
    io::{Read, Write},
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::{Component, Path},
};

use nix::{
    errno::Errno,
    fcntl::{AtFlags, OFlag},
    sys::stat::{fchmod, fstatat, futimens, mkdirat, Mode, SFlag},
    sys::time::TimeSpec,
    unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags},
};

use super::in_root::{io_error, open_child, open_dir, plain_name, split};
use crate::error::{Error, Result};

/// Where the archive goes: a directory it is unpacked in, and what its top
/// entry is renamed to (`None`: kept).
struct Target {
    dir: OwnedFd,
    top: String,
    rename: Option<OsString>,
}

/// Unpacks `archive`, whose top entry is `name` (`.`: a directory's
/// contents), at `dest` in the container whose root is `root`, as `docker
/// cp` does: into `dest` if it is a directory, else as `dest`. The number
/// of entries written.
pub(super) fn copy_to(root: OwnedFd, dest: &str, name: &str, archive: impl Read) -> Result<u64> {
    let dest_path = Path::new(dest);
    if !dest_path.is_absolute() {
        return Err(Error::InvalidArgument(format!("path {dest:?} is not absolute")));
    }
    if name != "." {
        plain_name(OsStr::new(name))?;
    }
    let target = match open_dir(&root, dest_path) {
        Ok(dir) => Target { dir, top: name.into(), rename: None },
        Err(Errno::ENOENT) if dest.ends_with('/') => return Err(Error::NotFound(format!("destination directory {dest} does not exist"))),
        Err(Errno::ENOENT) => {
            let (parent, new_name) = split(dest_path).ok_or_else(|| Error::InvalidArgument(format!("destination {dest:?} names no file or directory")))?;
            let parent_dir = open_dir(&root, &parent).map_err(io_error(format!("destination's parent {}", parent.display())))?;
            if name == "." {
                // A directory's contents to a new directory: make it.
                make_dir(&parent_dir, new_name, 0o755)?;
                let dir = open_child(&parent_dir, new_name, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(io_error(dest))?;
                Target { dir, top: ".".into(), rename: None }
            } else {
                Target { dir: parent_dir, top: name.into(), rename: Some(new_name.to_os_string()) }
            }
        }
        // An existing file: replaced by the archive's file (never by a
        // directory, refused when its entry comes).
        Err(Errno::ENOTDIR) if name != "." => {
            let (parent, new_name) = split(dest_path).ok_or_else(|| Error::InvalidArgument(format!("destination {dest:?}")))?;
            let parent_dir = open_dir(&root, &parent).map_err(io_error(format!("destination's parent {}", parent.display())))?;
            Target { dir: parent_dir, top: name.into(), rename: Some(new_name.to_os_string()) }
        }
        Err(e) => return Err(io_error(format!("destination {dest}"))(e)),
    };
    unpack(&target, archive)
}

fn unpack(target: &Target, archive: impl Read) -> Result<u64> {
    let mut archive = tar::Archive::new(archive);
    let mut written = 0;
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let path = entry.path().map_err(tar_error)?.into_owned();
        let mut names: Vec<OsString> = Vec::new();
        for c in path.components() {
            match c {
                Component::CurDir => {}
                Component::Normal(n) => names.push(plain_name(n)?.to_os_string()),
                _ => return Err(Error::InvalidArgument(format!("archive entry {} leaves its directory", path.display()))),
            }
        }
        if target.top != "." && names.first().map(|n| n.as_bytes()) != Some(target.top.as_bytes()) {
            return Err(Error::InvalidArgument(format!("archive entry {} is not below its top entry {}", path.display(), target.top)));
        }
        if let (Some(new), Some(first)) = (&target.rename, names.first_mut()) {
            *first = new.clone();
        }
        let Some((last, parents)) = names.split_last() else { continue };
        let dir = walk(&target.dir, parents, &path)?;
        let header = entry.header();
        let mode = header.mode().map_err(tar_error)? & 0o7777;
        let (uid, gid) = (header.uid().map_err(tar_error)? as u32, header.gid().map_err(tar_error)? as u32);
        let mtime = header.mtime().map_err(tar_error)? as i64;
        let kind = header.entry_type();
        let shown = path.display().to_string();
        match kind {
            tar::EntryType::Directory => {
                make_dir(&dir, last, 0o700)?;
                let made = open_child(&dir, last, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(io_error(&shown))?;
                fchown(&made, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io_error(&shown))?;
                fchmod(&made, Mode::from_bits_truncate(mode)).map_err(io_error(&shown))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_non_dir(&dir, last, &shown)?;
                let made = nix::fcntl::openat(
                    &dir,
                    last.as_os_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_error(&shown))?;
                let mut file = std::fs::File::from(made);
                std::io::copy(&mut entry, &mut file).map_err(|e| Error::Unavailable(format!("{shown}: {e}")))?;
                file.flush().map_err(Error::io("{shown}"))?;
                // Owner first: chown clears set-id bits a mode sets.
                fchown(&file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io_error(&shown))?;
                fchmod(&file, Mode::from_bits_truncate(mode)).map_err(io_error(&shown))?;
                let t = TimeSpec::new(mtime, 0);
                futimens(&file, &t, &t).map_err(io_error(&shown))?;
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name().map_err(tar_error)?.ok_or_else(|| Error::InvalidArgument(format!("symlink {shown} has no target")))?;
                remove_non_dir(&dir, last, &shown)?;
                // The link is made, not followed: its target is only text.
                symlinkat(link.as_ref(), &dir, last.as_os_str()).map_err(io_error(&shown))?;
                fchownat(&dir, last.as_os_str(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_error(&shown))?;
            }
            other => {
                tracing::debug!(entry = %shown, ?other, "cp: entry kind not copied");
                continue;
            }
        }
        written += 1;
    }
    Ok(written)
}

/// The directory `parents` below `base`, each step opened without
/// following a symlink (made if missing).
fn walk(base: &OwnedFd, parents: &[OsString], path: &Path) -> Result<OwnedFd> {
    let mut dir = base.try_clone().map_err(Error::io("dup"))?;
    for name in parents {
        dir = match open_child(&dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(d) => d,
            Err(Errno::ENOENT) => {
                make_dir(&dir, name, 0o755)?;
                open_child(&dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(io_error(path.display()))?
            }
            Err(e) => return Err(io_error(format!("{}: its directory {}", path.display(), name.to_string_lossy()))(e)),
        };
    }
    Ok(dir)
}

/// A directory `name` in `dir`; one that is there is kept, anything else
/// there is an error.
fn make_dir(dir: &OwnedFd, name: &OsStr, mode: u32) -> Result<()> {
    match mkdirat(dir, name, Mode::from_bits_truncate(mode)) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => {
            let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_error(name.to_string_lossy()))?;
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                Ok(())
            } else {
                Err(Error::FailedPrecondition(format!("cannot overwrite non-directory {} with a directory", name.to_string_lossy())))
            }
        }
        Err(e) => Err(io_error(name.to_string_lossy())(e)),
    }
}

/// Makes room for a file or link: what is there goes, unless it is a
/// directory.
fn remove_non_dir(dir: &OwnedFd, name: &OsStr, shown: &str) -> Result<()> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_error(shown)(e)),
        Ok(st) if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR => {
            Err(Error::FailedPrecondition(format!("cannot overwrite directory {shown} with a non-directory")))
        }
        Ok(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(io_error(shown)),
    }
}

fn tar_error(e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("archive: {e}"))
}
