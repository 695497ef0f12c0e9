//! User namespace requests (KEP-127, `NamespaceOption.userns_options`).
//!
//! A pod with mode POD gets one user namespace with the kubelet's maps,
//! made in RunPodSandbox and shared by all its containers; its network, IPC
//! and UTS namespaces are owned by it. The kubelet sends one range per map,
//! from container id 0 (65536 ids, at a multiple of 65536 on the host);
//! berth takes exactly that shape and refuses others by name. The
//! containers' root filesystems and the volumes the kubelet marks with
//! `uid_mappings` are idmapped mounts, so no file is chowned.

use std::{os::fd::AsFd, path::Path};

use berth_network::{IdMap, IdMapping};
use berth_oci::container::ResolvedUser;
use berth_userns::IdmappedLayers;
use k8s_cri::v1;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

pub(super) const POD_FIELD: &str = "config.linux.security_context.namespace_options.userns_options";

/// The pod's id map for mode POD, None for the host's user namespace.
/// `field` names the options.
pub(super) fn pod_map(field: &str, options: Option<&v1::UserNamespace>) -> Result<Option<IdMap>> {
    let Some(userns) = options else { return Ok(None) };
    let invalid = |what: String| Err(Error::InvalidArgument(format!("{field}.{what}")));
    match v1::NamespaceMode::try_from(userns.mode) {
        Ok(v1::NamespaceMode::Node) => {
            if !userns.uids.is_empty() || !userns.gids.is_empty() {
                return invalid("uids/gids: mode NODE takes no mappings (the host's user namespace is used)".into());
            }
            Ok(None)
        }
        Ok(v1::NamespaceMode::Pod) => {
            for (name, maps) in [("uids", &userns.uids), ("gids", &userns.gids)] {
                match maps.as_slice() {
                    [one] if one.container_id == 0 && one.length > 0 => {}
                    [one] if one.container_id != 0 => return invalid(format!("{name}: the mapping must start at container id 0, not {}", one.container_id)),
                    [_] => return invalid(format!("{name}: the mapping has length 0")),
                    [] => return invalid(format!("{name}: mode POD needs one mapping")),
                    more => return invalid(format!("{name}: exactly one mapping is supported, not {}", more.len())),
                }
            }
            let map = to_id_map(&userns.uids, &userns.gids);
            map.validate().map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
            Ok(Some(map))
        }
        Ok(mode @ (v1::NamespaceMode::Container | v1::NamespaceMode::Target)) => {
            invalid(format!("mode: {} is not valid for a user namespace (POD or NODE)", mode.as_str_name()))
        }
        Err(_) => invalid(format!("mode: unknown value {}", userns.mode)),
    }
}

pub(crate) fn to_id_map(uids: &[v1::IdMapping], gids: &[v1::IdMapping]) -> IdMap {
    let ranges = |maps: &[v1::IdMapping]| maps.iter().map(|m| IdMapping { container_id: m.container_id, host_id: m.host_id, size: m.length }).collect();
    IdMap { uids: ranges(uids), gids: ranges(gids) }
}

/// A user namespace is the pod's: a container may repeat the pod's options
/// (the kubelet does) but not ask for another.
pub(super) fn check_container(options: Option<&v1::UserNamespace>, pod: Option<&IdMap>) -> Result<()> {
    let field = "config.linux.security_context.namespace_options.userns_options";
    let Some(mine) = pod_map(field, options)? else {
        if options.is_some() && pod.is_some() {
            return Err(Error::InvalidArgument(format!("{field}.mode: NODE, but the pod has a user namespace of its own that all its containers share")));
        }
        return Ok(());
    };
    match pod {
        Some(pod) if *pod == mine => Ok(()),
        Some(_) => Err(Error::InvalidArgument(format!("{field}: the mappings differ from the pod's; a pod's containers share its user namespace"))),
        None => Err(Error::InvalidArgument(format!("{field}.mode: POD, but the pod was created without a user namespace"))),
    }
}

/// The process's ids must exist in the namespace: an unmapped uid cannot
/// be set (setuid fails with EINVAL deep in the container's start).
pub(super) fn check_user(map: &IdMap, user: &ResolvedUser) -> Result<()> {
    let limit = |ranges: &[IdMapping]| ranges.iter().map(|r| r.container_id as u64 + r.size as u64).max().unwrap_or(0);
    if map.host_uid(user.uid).is_none() {
        return Err(Error::InvalidArgument(format!(
            "config.linux.security_context.run_as_user: uid {} is outside the pod's user namespace (uids 0-{})",
            user.uid,
            limit(&map.uids).saturating_sub(1)
        )));
    }
    if let Some(gid) = std::iter::once(&user.gid).chain(&user.additional_gids).find(|g| map.host_gid(**g).is_none()) {
        return Err(Error::InvalidArgument(format!(
            "config.linux.security_context.run_as_group: gid {gid} is outside the pod's user namespace (gids 0-{})",
            limit(&map.gids).saturating_sub(1)
        )));
    }
    Ok(())
}

/// A mount the kubelet wants idmapped (`uid_mappings`/`gid_mappings`)
/// is shown through the pod's user namespace, so its maps must be the
/// pod's. Returns whether the mount is idmapped.
pub(super) fn check_mount(i: usize, mount: &v1::Mount, pod: Option<&IdMap>) -> Result<bool> {
    if mount.uid_mappings.is_empty() && mount.gid_mappings.is_empty() {
        return Ok(false);
    }
    let field = format!("config.mounts[{i}].uid_mappings/gid_mappings");
    match pod {
        None => Err(Error::InvalidArgument(format!("{field}: an idmapped mount needs the pod to have a user namespace"))),
        Some(pod) if *pod == to_id_map(&mount.uid_mappings, &mount.gid_mappings) => Ok(true),
        Some(_) => Err(Error::InvalidArgument(format!("{field}: the mappings differ from the pod's user namespace, the only one berth idmaps with"))),
    }
}

/// Mounts an image volume's snapshot at `target` with its layers shown
/// through the pod's user namespace (pinned at `pin`), read-only.
pub(super) fn mount_image_volume(mount: &berth_snapshot::Mount, target: &Path, pin: &Path, map: &IdMap) -> Result<()> {
    let userns = std::fs::File::open(pin).map_err(Error::io(format!("open the pod's user namespace {}", pin.display())))?;
    let root = (map.host_uid(0).unwrap_or(0), map.host_gid(0).unwrap_or(0));
    std::fs::create_dir_all(target).map_err(Error::io(format!("create {}", target.display())))?;
    let idmap_err = Error::internal::<berth_userns::Error>("show the image volume through the pod's user namespace");
    match mount.typ.as_str() {
        "bind" => {
            berth_userns::bind_idmapped(Path::new(&mount.source), target, userns.as_fd(), false).map_err(idmap_err)?;
        }
        "overlay" => {
            let scratch = target.with_extension("idmapped");
            let (layers, options) = IdmappedLayers::prepare(&mount.options, &scratch, userns.as_fd(), root).map_err(idmap_err)?;
            let data = options.into_iter().filter(|o| o != "ro" && o != "rw").collect::<Vec<_>>().join(",");
            let mounted = nix::mount::mount(Some("overlay"), target, Some("overlay"), MsFlags::MS_RDONLY, Some(data.as_str()));
            drop(layers);
            mounted.map_err(Error::io(format!("mount the image volume at {}", target.display())))?;
        }
        other => return Err(Error::Internal(format!("the snapshotter gave a mount of type {other:?}, which cannot be idmapped"))),
    }
    Ok(())
}

/// Takes the image volumes [`mount_image_volume`] mounted under the
/// container's bundle off again; none is fine.
pub(super) fn unmount_image_volumes(bundle: &Path) {
    let Ok(entries) = std::fs::read_dir(bundle.join("image-volumes")) else { return };
    for entry in entries.flatten() {
        if let Err(e) = nix::mount::umount2(&entry.path(), MntFlags::MNT_DETACH) {
            if e != nix::Error::EINVAL && e != nix::Error::ENOENT {
                tracing::warn!(path = %entry.path().display(), error = %e, "unmount an image volume");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(mode: v1::NamespaceMode, maps: Vec<(u32, u32, u32)>) -> v1::UserNamespace {
        let maps: Vec<v1::IdMapping> = maps.into_iter().map(|(c, h, l)| v1::IdMapping { container_id: c, host_id: h, length: l }).collect();
        v1::UserNamespace { mode: mode as i32, uids: maps.clone(), gids: maps }
    }

    #[test]
    fn pod_mode_gives_the_map_and_every_refusal_names_its_reason() {
        let f = "opts";
        assert_eq!(pod_map(f, None).unwrap(), None);
        assert_eq!(pod_map(f, Some(&ns(v1::NamespaceMode::Node, vec![]))).unwrap(), None);
        let map = pod_map(f, Some(&ns(v1::NamespaceMode::Pod, vec![(0, 65536, 65536)]))).unwrap().unwrap();
        assert_eq!(map.host_uid(0), Some(65536));
        let refused = |u: v1::UserNamespace, needle: &str| {
            let e = pod_map(f, Some(&u)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)) && e.to_string().contains(needle), "{e}");
        };
        refused(ns(v1::NamespaceMode::Pod, vec![(0, 1000, 100000), (0, 2000, 100000)]), "opts.uids: exactly one mapping");
        refused(ns(v1::NamespaceMode::Pod, vec![(1, 1000, 100000)]), "opts.uids: the mapping must start at container id 0");
        refused(ns(v1::NamespaceMode::Pod, vec![(0, u32::MAX - 10, 65536)]), "opts: id map: uids[0]");
        refused(ns(v1::NamespaceMode::Container, vec![]), "opts.mode: CONTAINER is not valid");
        refused(ns(v1::NamespaceMode::Target, vec![]), "opts.mode: TARGET is not valid");
        refused(ns(v1::NamespaceMode::Node, vec![(0, 1000, 1)]), "opts.uids/gids");
    }

    #[test]
    fn containers_share_the_pods_namespace_and_stay_inside_it() {
        let pod = pod_map("p", Some(&ns(v1::NamespaceMode::Pod, vec![(0, 65536, 65536)]))).unwrap();
        assert!(check_container(None, pod.as_ref()).is_ok());
        assert!(check_container(Some(&ns(v1::NamespaceMode::Pod, vec![(0, 65536, 65536)])), pod.as_ref()).is_ok());
        let other = check_container(Some(&ns(v1::NamespaceMode::Pod, vec![(0, 131072, 65536)])), pod.as_ref()).unwrap_err();
        assert!(other.to_string().contains("differ from the pod's"), "{other}");
        let node = check_container(Some(&ns(v1::NamespaceMode::Node, vec![])), pod.as_ref()).unwrap_err();
        assert!(node.to_string().contains("mode: NODE"), "{node}");
        assert!(check_container(Some(&ns(v1::NamespaceMode::Pod, vec![(0, 65536, 65536)])), None).is_err());

        let map = pod.unwrap();
        let user = |uid, gid, extra: Vec<u32>| ResolvedUser { uid, gid, additional_gids: extra };
        assert!(check_user(&map, &user(65535, 0, vec![10])).is_ok());
        assert!(check_user(&map, &user(65536, 0, vec![])).unwrap_err().to_string().contains("run_as_user: uid 65536 is outside"));
        assert!(check_user(&map, &user(0, 0, vec![70000])).unwrap_err().to_string().contains("gid 70000"));

        let mount = |maps: Vec<(u32, u32, u32)>| {
            let m: Vec<v1::IdMapping> = maps.into_iter().map(|(c, h, l)| v1::IdMapping { container_id: c, host_id: h, length: l }).collect();
            v1::Mount { uid_mappings: m.clone(), gid_mappings: m, ..Default::default() }
        };
        assert!(!check_mount(0, &mount(vec![]), Some(&map)).unwrap());
        assert!(check_mount(0, &mount(vec![(0, 65536, 65536)]), Some(&map)).unwrap());
        assert!(check_mount(2, &mount(vec![(0, 65536, 65536)]), None).unwrap_err().to_string().contains("config.mounts[2]"));
        assert!(check_mount(0, &mount(vec![(0, 1, 65536)]), Some(&map)).is_err());
    }
}
