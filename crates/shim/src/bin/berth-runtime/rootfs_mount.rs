//! Mounting `CreateTaskRequest.rootfs` (e.g. the snapshotter's overlay) on
//! `<bundle>/rootfs` in the host mount namespace, and undoing it.
//!
//! For a container in a user namespace the image's layers are shown
//! through the namespace's maps (`berth_userns::IdmappedLayers`, with its
//! scratch directory at `<bundle>/idmapped/`): nothing on disk is chowned
//! but the container's empty upper directory.

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use berth_container::sync::RootfsMount as Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use berth_userns::IdmappedLayers;

use crate::error::{Error, Result};

/// The user namespace a container's rootfs is shown through, and who its
/// root is on the host.
pub struct RootIdmap {
    userns: File,
    root_uid: u32,
    root_gid: u32,
}

impl RootIdmap {
    /// From the spec: a user namespace joined by path, with maps that
    /// give container id 0 a host id. None for a container without one.
    pub fn from_spec(spec: &Spec) -> Result<Option<Self>> {
        let Some(linux) = spec.linux().as_ref() else { return Ok(None) };
        let Some(path) = linux.namespaces().iter().flatten().find(|n| n.typ() == LinuxNamespaceType::User).and_then(|n| n.path().clone()) else {
            return Ok(None);
        };
        let root =
            |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>, what: &str| {
                maps.iter().flatten().find(|m| m.container_id() == 0).map(|m| m.host_id()).ok_or_else(|| {
                    Error::InvalidArgument(format!("spec linux.{what}: the user namespace {} maps no host id to container id 0", path.display()))
                })
            };
        let (root_uid, root_gid) = (root(linux.uid_mappings(), "uidMappings")?, root(linux.gid_mappings(), "gidMappings")?);
        let userns = File::open(&path).map_err(|e| Error::InvalidArgument(format!("open the user namespace {}: {e}", path.display())))?;
        Ok(Some(Self { userns, root_uid, root_gid }))
    }
}

/// Stacked mounts `unmount_rootfs` takes off at most: a bound on a loop
/// that a mount coming back faster than we take it off could make endless.
const MAX_STACKED: usize = 32;

/// Mounts every one of `mounts`, in order, on `<bundle>/rootfs` (as
/// containerd's `mount.All` does: usually one overlay or bind; a later one
/// lands on top of the earlier). Nothing stays mounted when one fails.
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount], idmap: Option<&RootIdmap>) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| Error::Internal(format!("create {}: {e}", target.display())))?;
    for (done, m) in mounts.iter().enumerate() {
        let mounted = match idmap {
            Some(idmap) => mount_idmapped(m, &target, bundle, idmap),
            None => mount_one(m, &target),
        };
        if let Err(e) = mounted {
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
    let typ = (!m.kind.is_empty() && m.kind != "bind").then_some(m.kind.as_str());
    if m.kind == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    let data = (!data.is_empty()).then(|| data.join(","));
    mount(Some(m.source.as_str()), target, typ, flags, data.as_deref())
        .map_err(|e| Error::InvalidArgument(format!("mount rootfs {} ({}) on {}: {e}", m.source, m.kind, target.display())))?;
    // A bind mount ignores MS_RDONLY until remounted.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        let remount = flags | MsFlags::MS_REMOUNT;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, remount, None::<&str>) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(Error::Internal(format!("make rootfs {} read-only: {e}", target.display())));
        }
    }
    Ok(())
}

fn mount_idmapped(m: &Mount, target: &Path, bundle: &Path, idmap: &RootIdmap) -> Result<()> {
    let refused = |e: berth_userns::Error| Error::InvalidArgument(format!("rootfs for a user namespace: {e}"));
    match m.kind.as_str() {
        "bind" => berth_userns::bind_idmapped(Path::new(&m.source), target, idmap.userns.as_fd(), m.options.iter().any(|o| o == "rbind")).map_err(refused),
        "overlay" => {
            let root = (idmap.root_uid, idmap.root_gid);
            let (layers, options) = IdmappedLayers::prepare(&m.options, &bundle.join("idmapped"), idmap.userns.as_fd(), root).map_err(refused)?;
            let mounted = mount_one(&Mount { options, ..m.clone() }, target);
            drop(layers);
            mounted
        }
        other => Err(Error::InvalidArgument(format!("rootfs of type {other:?} cannot be shown through a user namespace (only overlay and bind)"))),
    }
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
                umount2(target, MntFlags::MNT_DETACH).map_err(|e| Error::Internal(format!("unmount {}: {e}", target.display())))?;
            }
            Err(e) => return Err(Error::Internal(format!("unmount {}: {e}", target.display()))),
        }
    }
    Err(Error::Internal(format!("unmount {}: still mounted after {MAX_STACKED} unmounts", target.display())))
}
