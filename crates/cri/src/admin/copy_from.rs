//! Containers.CopyFrom: a file or directory of a running container as a
//! tar stream (`berthctl cp CONTAINER:SRC DEST`). Written on the blocking
//! pool as the client reads it; symlinks are archived as links, never
//! followed (`in_root`).

use std::{
    ffi::{OsStr, OsString},
    io::Write,
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use berth_api::{
    admin::v1::{CopyFromChunk, CopyFromRequest},
    chunks::ChunkWriter,
};
use nix::{
    dir::Dir,
    fcntl::{AtFlags, OFlag},
    sys::stat::{fstatat, FileStat, SFlag},
};
use tokio::sync::mpsc;
use tonic::Status;

use super::in_root::{io_error, open_child, open_dir, split};
use crate::error::{Error, Result};

/// The tar, sent to the client in chunks; a client gone makes every write
/// fail, which ends the copy.
type Out = ChunkWriter<std::result::Result<CopyFromChunk, Status>>;

/// What goes into the archive: `path`, under the name `name` (empty: its
/// own; `.`: its contents, with names relative to it).
pub(super) fn copy_from(root: OwnedFd, req: &CopyFromRequest, tx: mpsc::Sender<Result<CopyFromChunk, Status>>) -> Result<u64> {
    let path = Path::new(&req.path);
    if !path.is_absolute() {
        return Err(Error::InvalidArgument(format!("path {:?} is not absolute", req.path)));
    }
    let follow = req.path.ends_with("/.") || req.path.ends_with('/');
    let mut out = tar::Builder::new(ChunkWriter::new(tx, |data| Ok(CopyFromChunk { data }), "the client left"));
    out.mode(tar::HeaderMode::Complete);
    let entries = match (req.name.as_str(), split(path)) {
        // The directory's contents: its entries under their own names.
        (".", _) | ("", None) => {
            let dir = open_dir(&root, path).map_err(io_error(format!("open {}", req.path)))?;
            append_children(&mut out, &dir, Path::new(""))?
        }
        (shown, Some((parent, name))) if !follow => {
            let dir = open_dir(&root, &parent).map_err(io_error(format!("open {}", parent.display())))?;
            let shown: OsString = if shown.is_empty() { name.to_os_string() } else { OsString::from(shown) };
            append(&mut out, &dir, name, Path::new(&shown))?.ok_or_else(|| Error::NotFound(format!("{}: not a file, directory or symlink", req.path)))?
        }
        // A directory named as one (`dir/.`, `dir/`: a symlink to a
        // directory is followed, inside the root), or the root itself.
        (name, parts) => {
            let dir = open_dir(&root, path).map_err(io_error(format!("open {}", req.path)))?;
            let st = nix::sys::stat::fstat(&dir).map_err(io_error(&req.path))?;
            let shown: OsString = match (name, parts) {
                ("", Some((_, base))) => base.to_os_string(),
                _ => OsString::from(name),
            };
            let mut header = header_of(&st);
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            out.append_data(&mut header, Path::new(&shown), std::io::empty()).map_err(archive_error)?;
            1 + append_children(&mut out, &dir, Path::new(&shown))?
        }
    };
    let mut writer = out.into_inner().map_err(|e| Error::Unavailable(format!("archive: {e}")))?;
    writer.flush().map_err(|e| Error::Unavailable(format!("archive: {e}")))?;
    Ok(entries)
}

/// Archives `name` (a child of `dir`) as `archived`, and what is below it;
/// the number of entries, `None` for a kind not archived (socket, device).
fn append(out: &mut tar::Builder<Out>, dir: &OwnedFd, name: &OsStr, archived: &Path) -> Result<Option<u64>> {
    let what = || archived.display().to_string();
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io_error(what()))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let mut header = header_of(&st);
    match kind {
        SFlag::S_IFDIR => {
            let child = open_child(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(io_error(what()))?;
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            out.append_data(&mut header, archived, std::io::empty()).map_err(archive_error)?;
            Ok(Some(1 + append_children(out, &child, archived)?))
        }
        SFlag::S_IFREG => {
            // O_NONBLOCK: were it swapped for a fifo meanwhile, the open
            // must not hang; the fstat below sees the swap.
            let file = open_child(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK).map_err(io_error(what()))?;
            let now = nix::sys::stat::fstat(&file).map_err(io_error(what()))?;
            if SFlag::from_bits_truncate(now.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
                return Err(Error::FailedPrecondition(format!("{}: changed while it was copied", what())));
            }
            let mut header = header_of(&now);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(now.st_size as u64);
            // Exactly the size in the header, should the file grow.
            let file = std::fs::File::from(file);
            let reader = std::io::Read::take(file, now.st_size as u64);
            out.append_data(&mut header, archived, PadTo { inner: reader, left: now.st_size as u64 }).map_err(archive_error)?;
            Ok(Some(1))
        }
        SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, name).map_err(io_error(what()))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            out.append_link(&mut header, archived, Path::new(&target)).map_err(archive_error)?;
            Ok(Some(1))
        }
        _ => {
            tracing::debug!(path = %what(), "cp: not archived (neither file, directory nor symlink)");
            Ok(None)
        }
    }
}

fn append_children(out: &mut tar::Builder<Out>, dir: &OwnedFd, archived: &Path) -> Result<u64> {
    let names: Vec<OsString> = {
        let dup = dir.try_clone().map_err(Error::io("dup"))?;
        let mut listing = Dir::from_fd(dup).map_err(io_error(archived.display()))?;
        listing.iter().filter_map(|e| e.ok()).map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string()).filter(|n| n != "." && n != "..").collect()
    };
    let mut entries = 0;
    for name in names {
        let below: PathBuf = archived.join(&name);
        entries += append(out, dir, &name, &below)?.unwrap_or(0);
    }
    Ok(entries)
}

fn header_of(st: &FileStat) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(st.st_uid as u64);
    header.set_gid(st.st_gid as u64);
    header.set_mtime(st.st_mtime.max(0) as u64);
    header
}

fn archive_error(e: std::io::Error) -> Error {
    Error::Unavailable(format!("archive: {e}"))
}

/// A file's bytes, zero-padded to the size the header promised should it
/// have shrunk meanwhile.
struct PadTo<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for PadTo<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = match self.inner.read(buf)? {
            0 => {
                let n = buf.len().min(self.left as usize);
                buf[..n].fill(0);
                n
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}
