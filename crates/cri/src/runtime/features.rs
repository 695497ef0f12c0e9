//! What berth honours on this node, as `Status` advertises it. The kubelet
//! acts on these claims (it sends recursive read-only mounts, or admits
//! Strict pods, only when told it may), so each one comes from the check
//! that the code path honouring it relies on, never from a constant.

use std::{path::Path, sync::OnceLock};

use berth_network::{IdMap, IdMapping};
use berth_userns::NamespaceHolder;

/// mount_setattr(2) (Linux 5.12+) is what makes a bind mount read-only
/// with all its submounts; without it berth refuses `recursive_read_only`.
pub(crate) fn recursive_read_only_mounts() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(berth_userns::mount_setattr_available)
}

/// `SupplementalGroupsPolicy` Merge and Strict are both resolved in
/// `user::resolve` from the image's own /etc/group, and ContainerStatus
/// reports the resulting identity (`ContainerUser`).
pub(crate) const SUPPLEMENTAL_GROUPS_POLICY: bool = true;

/// User namespaces for pods (KEP-127): the kernel must make one with
/// maps and show the image's layers through it to an overlay (idmapped
/// lower layers, Linux 5.19+), on the filesystem the snapshots are on.
/// The probe does just that in a scratch directory under `snapshots`.
pub(crate) fn user_namespaces(snapshots: &Path) -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| match idmapped_overlay_works(snapshots) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "user namespaces are not offered: idmapped overlay layers do not work here");
            false
        }
    })
}

fn idmapped_overlay_works(snapshots: &Path) -> Result<(), String> {
    let scratch = snapshots.join(format!(".userns-probe-{}", std::process::id()));
    let result = probe_in(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn probe_in(dir: &Path) -> Result<(), String> {
    use std::os::{fd::AsFd, unix::fs::MetadataExt};
    let [lower, idmapped, upper, work, merged] = ["lower", "idmapped", "upper", "work", "merged"].map(|d| dir.join(d));
    for d in [&lower, &idmapped, &upper, &work, &merged] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    std::fs::write(lower.join("file"), "").map_err(|e| e.to_string())?;
    let range = vec![IdMapping { container_id: 0, host_id: PROBE_HOST_ID, size: 1 }];
    let holder = NamespaceHolder::spawn(&IdMap { uids: range.clone(), gids: range }, nix::sched::CloneFlags::empty()).map_err(|e| e.to_string())?;
    let userns = holder.user_namespace().map_err(|e| e.to_string())?;
    berth_userns::bind_idmapped(&lower, &idmapped, userns.as_fd(), false).map_err(|e| e.to_string())?;
    let data = format!("lowerdir={},upperdir={},workdir={}", idmapped.display(), upper.display(), work.display());
    let mounted = nix::mount::mount(Some("overlay"), &merged, Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str()));
    let _ = nix::mount::umount2(&idmapped, nix::mount::MntFlags::MNT_DETACH);
    mounted.map_err(|e| format!("overlay on an idmapped layer: {e}"))?;
    let owner = std::fs::metadata(merged.join("file")).map(|m| m.uid());
    let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
    match owner {
        Ok(PROBE_HOST_ID) => Ok(()),
        Ok(other) => Err(format!("a file of uid 0 on an idmapped layer shows as {other} in the overlay, not {PROBE_HOST_ID}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Any id will do for the probe's one-id map; this one is far from the
/// ranges the kubelet hands out (multiples of 65536 from 65536).
const PROBE_HOST_ID: u32 = 3_999_999_999;

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim follows the kernel: where mount_setattr exists, a real
    /// recursive read-only attribute can be set, so the claim is true.
    #[test]
    fn recursive_read_only_claim_matches_the_kernel() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string();
        let mut parts = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        assert_eq!(recursive_read_only_mounts(), (major, minor) >= (5, 12), "kernel {release}");
    }

    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// The user namespace claim is the probe that does what a pod's rootfs
    /// needs (an overlay on an idmapped layer), true from Linux 5.19, and
    /// the probe leaves nothing behind.
    #[test]
    fn user_namespace_claim_is_an_idmapped_overlay_that_works() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the probe mounts, which needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let result = idmapped_overlay_works(dir.path());
        assert_eq!(result.is_ok(), kernel() >= (5, 19), "kernel {:?}: {result:?}", kernel());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe's scratch directory is removed");
        assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&dir.path().display().to_string()));
    }
}
