//! Mounting `CreateTaskRequest.rootfs` (e.g. the snapshotter's overlay) on
//! `<bundle>/rootfs` in the host mount namespace, and undoing it.

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Result, ShimError};

/// Stacked mounts `unmount_rootfs` takes off at most: a bound on a loop
/// that a mount coming back faster than we take it off could make endless.
const MAX_STACKED: usize = 32;

/// Mounts every one of `mounts`, in order, on `<bundle>/rootfs` (as
/// containerd's `mount.All` does: usually one overlay or bind; a later one
/// lands on top of the earlier). Nothing stays mounted when one fails.
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| ShimError::Internal(format!("create {}: {e}", target.display())))?;
    for (done, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, &target) {
            for _ in 0..done {
                let _ = umount2(&target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(Some(target))
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in &m.options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let typ = (!m.type_.is_empty() && m.type_ != "bind").then_some(m.type_.as_str());
    if m.type_ == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    let data = (!data.is_empty()).then(|| data.join(","));
    mount(Some(m.source.as_str()), target, typ, flags, data.as_deref())
        .map_err(|e| ShimError::InvalidArgument(format!("mount rootfs {} ({}) on {}: {e}", m.source, m.type_, target.display())))?;
    // A bind mount ignores MS_RDONLY until remounted.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        let remount = flags | MsFlags::MS_REMOUNT;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, remount, None::<&str>) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(ShimError::Internal(format!("make rootfs {} read-only: {e}", target.display())));
        }
    }
    Ok(())
}

/// Takes every mount off `target`, newest first; a target with nothing
/// mounted (or none at all) is fine.
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    for _ in 0..MAX_STACKED {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            // Busy: something still holds it (a leaked process). Detach so the
            // path is free; the kernel frees the mount when the last user goes.
            Err(nix::Error::EBUSY) => {
                log::warn!("rootfs {} busy; detaching", target.display());
                umount2(target, MntFlags::MNT_DETACH).map_err(|e| ShimError::Internal(format!("unmount {}: {e}", target.display())))?;
            }
            Err(e) => return Err(ShimError::Internal(format!("unmount {}: {e}", target.display()))),
        }
    }
    Err(ShimError::Internal(format!("unmount {}: still mounted after {MAX_STACKED} unmounts", target.display())))
}
