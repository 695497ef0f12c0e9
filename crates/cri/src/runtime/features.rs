//! What berth honours on this node, as `Status` advertises it. The kubelet
//! acts on these claims (it sends recursive read-only mounts, or admits
//! Strict pods, only when told it may), so each one comes from the check
//! that the code path honouring it relies on, never from a constant.

use std::sync::OnceLock;

/// mount_setattr(2) (Linux 5.12+) is what makes a bind mount read-only
/// with all its submounts; without it berth refuses `recursive_read_only`.
pub(crate) fn recursive_read_only_mounts() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(mount_setattr_available)
}

/// `SupplementalGroupsPolicy` Merge and Strict are both resolved in
/// `user::resolve` from the image's own /etc/group, and ContainerStatus
/// reports the resulting identity (`ContainerUser`).
pub(crate) const SUPPLEMENTAL_GROUPS_POLICY: bool = true;

/// User namespaces for pods (KEP-127) are not implemented: a pod that asks
/// for one is refused in RunPodSandbox.
pub(crate) const USER_NAMESPACES: bool = false;

fn mount_setattr_available() -> bool {
    // An attribute struct of size 0 is refused with EINVAL before the
    // kernel looks at anything else; a kernel without the call says ENOSYS.
    // SAFETY: null pointers with a size of 0: the kernel reads nothing.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_mount_setattr, -1, std::ptr::null::<u8>(), 0, std::ptr::null::<u8>(), 0usize) };
    rc != -1 || nix::Error::last() != nix::Error::ENOSYS
}

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
}
