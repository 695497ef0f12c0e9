//! Where pods and containers go in the cgroup tree, by cgroup driver.
//!
//! The kubelet's cgroup driver and the runtime's must agree. With cgroupfs
//! the pod's parent is a path (`/kubepods/burstable/pod<uid>`) and a
//! container's cgroup is a directory in it; with systemd the parent is a
//! slice (`kubepods-burstable-pod<uid>.slice`) and a container runs in the
//! transient scope `berth-<id>.scope` inside it, written for the shim as
//! `slice:berth:<id>`.

use k8s_cri::v1;

use super::Runtime;
use crate::error::{Error, Result};

/// The scope prefix of containers under the systemd driver
/// (`berth-<id>.scope`), as containerd uses `cri-containerd`.
pub const SCOPE_PREFIX: &str = "berth";

impl Runtime {
    /// The pod's cgroup parent: the kubelet's, or berth's default.
    pub(crate) fn cgroup_parent_of(&self, config: &v1::PodSandboxConfig) -> String {
        config.linux.as_ref().map(|l| l.cgroup_parent.clone()).filter(|p| !p.is_empty()).unwrap_or_else(|| self.info.default_cgroup_parent.clone())
    }

    /// The OCI `linux.cgroupsPath` of a container (or a pod's pause) `id`.
    pub(crate) fn cgroups_path(&self, parent: &str, id: &str) -> String {
        if self.info.systemd_cgroup {
            format!("{parent}:{SCOPE_PREFIX}:{id}")
        } else {
            format!("{}/{id}", parent.trim_end_matches('/'))
        }
    }
}

/// RunPodSandbox's check that the kubelet's cgroup parent fits berth's
/// driver: a mismatch means the kubelet and berth disagree on the driver,
/// and every container would land somewhere nobody looks.
pub(crate) fn check_cgroup_parent(parent: &str, systemd: bool) -> Result<()> {
    if parent.is_empty() {
        return Ok(());
    }
    let field = "config.linux.cgroup_parent";
    if systemd && !berth_cgroups::systemd::is_slice_name(parent) {
        return Err(Error::InvalidArgument(format!(
            "{field} {parent:?} is not a systemd slice (such as kubepods-burstable-pod<uid>.slice), which cgroup_driver = \"systemd\" needs: \
             is the kubelet's cgroupDriver \"cgroupfs\"?"
        )));
    }
    if !systemd && berth_cgroups::systemd::is_slice_name(parent) {
        return Err(Error::InvalidArgument(format!(
            "{field} {parent:?} is a systemd slice, but cgroup_driver = \"cgroupfs\" needs a path (such as /kubepods/burstable/pod<uid>): \
             is the kubelet's cgroupDriver \"systemd\"?"
        )));
    }
    if !systemd && parent.split('/').any(|part| part == "..") {
        return Err(Error::InvalidArgument(format!("{field} {parent:?} leaves the cgroup tree")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_driver_takes_its_own_form_of_parent() {
        assert!(check_cgroup_parent("/kubepods/burstable/pod1", false).is_ok());
        assert!(check_cgroup_parent("kubepods-burstable-pod1.slice", true).is_ok());
        assert!(check_cgroup_parent("", true).is_ok());
        let err = check_cgroup_parent("/kubepods/burstable/pod1", true).unwrap_err().to_string();
        assert!(err.contains("config.linux.cgroup_parent") && err.contains("systemd"), "{err}");
        let err = check_cgroup_parent("kubepods-burstable-pod1.slice", false).unwrap_err().to_string();
        assert!(err.contains("config.linux.cgroup_parent") && err.contains("cgroupfs"), "{err}");
        assert!(check_cgroup_parent("/kubepods/../../etc", false).is_err());
    }
}
