//! Applies an OCI/Docker layer tarball to a snapshot directory (an overlay
//! upperdir), converting the OCI whiteout convention into overlayfs's:
//!
//! | in the layer            | on disk                                        |
//! | ----------------------- | ---------------------------------------------- |
//! | `dir/.wh.name`          | `dir/name` as a 0:0 character device            |
//! | `dir/.wh..wh..opq`      | `dir` with xattr `trusted.overlay.opaque=y`     |
//!
//! Owners, modes, mtimes, xattrs, symlinks, hard links, fifos and device
//! nodes are kept. An entry that would land outside the directory (`..`
//! components, or a path through a symlink pointing out) fails the whole
//! layer: a layer like that is an attack, not an image.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    path::{Component, Path, PathBuf},
};

use nix::{
    sys::stat::{makedev, mknod, Mode, SFlag},
    unistd::{fchownat, Gid, Uid},
};
use tar::EntryType;

use crate::error::{Error, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What one layer contained, for logs and benchmarks.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub entries: u64,
    pub whiteouts: u64,
}

/// Unpacks `layer` (gzip, zstd or plain tar, detected from the first
/// bytes) into `dest`. `lowers` are the parent layers' directories, topmost
/// first: a hard link to a file that only a lower layer has gets that file
/// copied up first, since an upperdir cannot link across layers.
pub fn apply_layer(layer: impl Read, dest: &Path, lowers: &[PathBuf]) -> Result<Applied> {
    let mut archive = tar::Archive::new(decompress(layer)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut applied = Applied::default();
    // Resolved once: every whiteout's parent is checked against it.
    let root = dest.canonicalize().map_err(Error::io("canonicalize", dest))?;
    for entry in archive.entries().map_err(Error::Read)? {
        let mut entry = entry.map_err(Error::Read)?;
        let path = entry.path().map_err(Error::Read)?.into_owned();
        let rel = relative(&path)?;
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        applied.entries += 1;
        let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
        if name == OPAQUE_MARKER {
            ensure_inside(&root, &parent, &path)?;
            fs::create_dir_all(&parent).map_err(|e| Error::Entry { path: path.clone(), source: e })?;
            set_xattr(&parent, "trusted.overlay.opaque", b"y").map_err(|e| Error::Entry { path, source: e })?;
            applied.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(Error::Escape { path, reason: "whiteout of '.' or '..'".into() });
            }
            ensure_inside(&root, &parent, &path)?;
            let target = parent.join(hidden);
            remove_any(&target);
            fs::create_dir_all(&parent).map_err(|e| Error::Entry { path: path.clone(), source: e })?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| Error::Entry { path, source: e.into() })?;
            applied.whiteouts += 1;
            continue;
        }
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                ensure_inside(&root, &parent, &path)?;
                make_node(&mut entry, kind, &dest.join(&rel)).map_err(|e| Error::Entry { path: path.clone(), source: e })?;
            }
            _ => {
                if kind == EntryType::Link {
                    copy_up_link_target(&entry, &root, dest, lowers)?;
                }
                match entry.unpack_in(dest) {
                    Ok(true) => {}
                    Ok(false) => return Err(Error::Escape { path, reason: "outside the layer root".into() }),
                    Err(e) if e.to_string().contains("outside of destination") => {
                        return Err(Error::Escape { path, reason: "through a symlink that points outside".into() })
                    }
                    Err(e) => return Err(Error::Entry { path, source: with_cause(e) }),
                }
            }
        }
    }
    Ok(applied)
}

/// The tar crate's errors say what failed and keep why in their source;
/// the message must carry both.
fn with_cause(e: std::io::Error) -> std::io::Error {
    match std::error::Error::source(&e).map(|c| c.to_string()) {
        Some(cause) => std::io::Error::new(e.kind(), format!("{e}: {cause}")),
        None => e,
    }
}

/// gzip and zstd by their magic numbers; anything else is read as tar.
pub(crate) fn decompress<'a>(layer: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, layer);
    let head = reader.fill_buf().map_err(Error::Read)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(Error::Read)?)
    } else {
        Box::new(reader)
    })
}

/// The entry path without its leading `/` or `./`; `..` is an escape.
fn relative(path: &Path) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => rel.push(p),
            Component::ParentDir => return Err(Error::Escape { path: path.into(), reason: "'..' component".into() }),
            _ => {}
        }
    }
    Ok(rel)
}

/// The parent must resolve (following symlinks already unpacked) to a
/// directory inside `root`, the canonical layer directory.
fn ensure_inside(root: &Path, parent: &Path, path: &Path) -> Result<()> {
    let mut existing = parent.to_path_buf();
    while !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let canon = existing.canonicalize().map_err(|e| Error::Entry { path: path.into(), source: e })?;
    if canon.starts_with(root) {
        Ok(())
    } else {
        Err(Error::Escape { path: path.into(), reason: "through a symlink that points outside".into() })
    }
}

fn make_node<R: Read>(entry: &mut tar::Entry<'_, R>, kind: EntryType, target: &Path) -> std::io::Result<()> {
    let h = entry.header();
    let mode = h.mode()? & 0o7777;
    let (major, minor) = (h.device_major()?.unwrap_or(0), h.device_minor()?.unwrap_or(0));
    let flag = match kind {
        EntryType::Char => SFlag::S_IFCHR,
        EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    remove_any(target);
    mknod(target, flag, Mode::from_bits_truncate(mode), makedev(major.into(), minor.into()))?;
    let (uid, gid) = (h.uid()? as u32, h.gid()? as u32);
    fchownat(nix::fcntl::AT_FDCWD, target, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    // mknod applied the umask; set exactly what the layer says.
    fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

/// A hard link whose target is only in a lower layer: copy the target up
/// (content, mode, owner) so the link can be made inside this layer.
///
/// Neither side of the copy may leave its layer through a symlink: a
/// symlink in this layer (`a -> ../..`) would have the copy written onto
/// the host, and one in a lower layer (`up -> /etc`, which an image may
/// rightly hold: it means the container's /etc) would have a host file
/// read into the image. Both were possible before the fuzz target
/// `layer_tar_bytes` checked for them.
fn copy_up_link_target<R: Read>(entry: &tar::Entry<'_, R>, root: &Path, dest: &Path, lowers: &[PathBuf]) -> Result<()> {
    let Ok(Some(link)) = entry.link_name() else { return Ok(()) };
    let rel = relative(&link)?;
    let here = dest.join(&rel);
    if fs::symlink_metadata(&here).is_ok() {
        return Ok(());
    }
    let Some((source, meta)) = lowers.iter().find_map(|lower| in_lower(lower, &rel)) else { return Ok(()) };
    let parent = here.parent().unwrap_or(dest);
    ensure_inside(root, parent, &link)?;
    fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    if meta.file_type().is_symlink() {
        // A hard link to a symlink links the symlink itself.
        let target = fs::read_link(&source).map_err(Error::io("read link", &source))?;
        std::os::unix::fs::symlink(&target, &here).map_err(Error::io("copy up", &source))?;
    } else {
        fs::copy(&source, &here).map_err(Error::io("copy up", &source))?;
    }
    use std::os::unix::fs::MetadataExt;
    fchownat(nix::fcntl::AT_FDCWD, &here, Some(Uid::from_raw(meta.uid())), Some(Gid::from_raw(meta.gid())), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| Error::Io { op: "chown", path: here.clone(), source: e.into() })?;
    Ok(())
}

/// `rel` in the lower layer `lower`, with its metadata (not followed), if
/// it is a file or a symlink reached without leaving that layer.
fn in_lower(lower: &Path, rel: &Path) -> Option<(PathBuf, fs::Metadata)> {
    let path = lower.join(rel);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !(meta.is_file() || meta.file_type().is_symlink()) {
        return None;
    }
    let lower = lower.canonicalize().ok()?;
    let parent = path.parent()?.canonicalize().ok()?;
    parent.starts_with(&lower).then_some((path, meta))
}

fn remove_any(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Without following a symlink: the layer's entry itself gets the attribute.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    xattr::set(path, name, value)
}
