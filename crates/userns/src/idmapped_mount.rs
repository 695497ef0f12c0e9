//! Idmapped mounts through the new mount API (Linux 5.12+): a detached
//! copy of a mount, shown through a user namespace's id maps, attached
//! elsewhere later. Written against the raw system calls: neither nix nor
//! rustix (which lists mount_setattr as not implemented) wraps them all.

use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

use crate::error::{Error, Result};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::IdMap(format!("path {path:?} holds a NUL byte")))
}

/// A detached copy of the mount at `source` (with its submounts when
/// `recursive`) whose files show their owners through `userns`'s maps:
/// on-disk uid 0 is the namespace's root. The kernel refuses
/// (EINVAL/EPERM) a filesystem that cannot be idmapped.
pub fn idmapped_mount(source: &Path, userns: BorrowedFd<'_>, recursive: bool) -> Result<OwnedFd> {
    let path = c_path(source)?;
    let rec = if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: a valid C string; the returned fd is checked before use.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec) };
    if fd < 0 {
        return Err(Error::sys(format!("open_tree {}", source.display()))(nix::Error::last()));
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    setattr(tree.as_raw_fd(), c"", libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 }, &attr)
        .map_err(Error::sys(format!("idmap the mount of {}", source.display())))?;
    Ok(tree)
}

/// Attaches a detached mount (from [`idmapped_mount`]) at `target`.
pub fn attach(mount: BorrowedFd<'_>, target: &Path) -> Result<()> {
    let to = c_path(target)?;
    // SAFETY: a valid fd and C strings.
    let rc = unsafe { libc::syscall(libc::SYS_move_mount, mount.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, to.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH) };
    if rc != 0 {
        return Err(Error::sys(format!("move_mount onto {}", target.display()))(nix::Error::last()));
    }
    Ok(())
}

/// An idmapped copy of the mount at `source`, attached at `target` (the
/// two steps above, for callers that need no detached mount in between).
pub fn bind_idmapped(source: &Path, target: &Path, userns: BorrowedFd<'_>, recursive: bool) -> Result<()> {
    attach(idmapped_mount(source, userns, recursive)?.as_fd(), target)
}

/// Read-only for the mount at `path` and every submount (AT_RECURSIVE).
/// There is no fallback: a mount read-only at the top only would let
/// writes through its submounts.
pub fn set_recursive_readonly(path: &Path) -> Result<()> {
    let c = c_path(path)?;
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    setattr(libc::AT_FDCWD, &c, libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW, &attr).map_err(Error::sys(format!("mount_setattr(rro) {}", path.display())))
}

/// Whether this kernel has mount_setattr(2) (Linux 5.12+), which
/// recursive read-only mounts and idmapped mounts need.
pub fn mount_setattr_available() -> bool {
    // An attribute struct of size 0 is refused with EINVAL before the
    // kernel looks at anything else; a kernel without the call says ENOSYS.
    // SAFETY: null pointers with a size of 0: the kernel reads nothing.
    let rc = unsafe { libc::syscall(libc::SYS_mount_setattr, -1, std::ptr::null::<u8>(), 0, std::ptr::null::<u8>(), 0usize) };
    rc != -1 || nix::Error::last() != nix::Error::ENOSYS
}

fn setattr(dirfd: i32, path: &std::ffi::CStr, flags: i32, attr: &MountAttr) -> nix::Result<()> {
    // SAFETY: a valid C string and a correctly sized, initialised mount_attr.
    let rc = unsafe { libc::syscall(libc::SYS_mount_setattr, dirfd, path.as_ptr(), flags, attr as *const MountAttr, std::mem::size_of::<MountAttr>()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use nix::{mount::MntFlags, sched::CloneFlags};

    use super::*;
    use crate::{IdMap, IdMapping, NamespaceHolder};

    /// A file owned by 0 on disk, seen through a mount idmapped with
    /// "0 -> 400000", belongs to 400000 on the host.
    #[test]
    fn owners_show_through_the_maps() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: idmapped mounts need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(source.join("from-host"), "x").unwrap();
        let r = vec![IdMapping { container_id: 0, host_id: 400_000, size: 65_536 }];
        let holder = NamespaceHolder::spawn(&IdMap { uids: r.clone(), gids: r }, CloneFlags::empty()).unwrap();
        let userns = holder.user_namespace().unwrap();
        bind_idmapped(&source, &target, userns.as_fd(), false).unwrap();
        let seen = std::fs::metadata(target.join("from-host")).unwrap();
        nix::mount::umount2(&target, MntFlags::MNT_DETACH).unwrap();
        assert_eq!((seen.uid(), seen.gid()), (400_000, 400_000));
    }
}
