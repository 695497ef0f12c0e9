//! Mounting `CreateTaskRequest.rootfs` (e.g. the snapshotter's overlay) on
//! `<bundle>/rootfs` in the host mount namespace, and undoing it.

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Result, ShimError};

pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    let Some(m) = mounts.first() else { return Ok(None) };
    if mounts.len() > 1 {
        return Err(ShimError::InvalidArgument(format!("rootfs: {} mounts given, berth-shim takes one", mounts.len())));
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| ShimError::Internal(format!("create {}: {e}", target.display())))?;
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
            other => data.push(other),
        }
    }
    let typ = (!m.type_.is_empty() && m.type_ != "bind").then_some(m.type_.as_str());
    if m.type_ == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    let data = (!data.is_empty()).then(|| data.join(","));
    mount(Some(m.source.as_str()), &target, typ, flags, data.as_deref())
        .map_err(|e| ShimError::InvalidArgument(format!("mount rootfs {} ({}) on {}: {e}", m.source, m.type_, target.display())))?;
    Ok(Some(target))
}

pub fn unmount_rootfs(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        // Busy: something still holds it (a leaked process). Detach so the
        // path is free; the kernel frees the mount when the last user goes.
        Err(nix::Error::EBUSY) => {
            log::warn!("rootfs {} busy; detaching", target.display());
            umount2(target, MntFlags::MNT_DETACH).map_err(|e| ShimError::Internal(format!("unmount {}: {e}", target.display())))
        }
        Err(e) => Err(ShimError::Internal(format!("unmount {}: {e}", target.display()))),
    }
}
