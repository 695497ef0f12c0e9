//! The AppArmor profile of the container's process. berthd chose it (and
//! checked it is loaded); here it is requested for the coming execve by
//! writing `exec <profile>` to the process's own exec attribute, so the
//! workload starts confined and the init before it is not.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// Requests `profile` for this process's next execve. `proc_root` is
/// `/proc` (a test gives a directory of its own).
pub fn set_exec_profile(proc_root: &Path, profile: &str) -> Result<()> {
    let path = exec_attr_path(proc_root);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Error::InvalidSpec(format!("process.apparmorProfile {profile:?}: open {}: {e}", path.display())))?;
    // One write: the kernel takes the request from a single write call.
    file.write_all(exec_request(profile).as_bytes())
        .map_err(|e| Error::InvalidSpec(format!("process.apparmorProfile {profile:?}: write {}: {e}", path.display())))
}

/// The AppArmor-only attribute directory (kernels with LSM stacking, 5.8
/// and later) when it exists, else the shared one older kernels have.
pub fn exec_attr_path(proc_root: &Path) -> PathBuf {
    let own = proc_root.join("self/attr/apparmor/exec");
    if own.exists() {
        own
    } else {
        proc_root.join("self/attr/exec")
    }
}

/// What the attribute takes: the `exec` command and the profile name.
pub fn exec_request(profile: &str) -> String {
    format!("exec {profile}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_goes_to_the_apparmor_attribute_when_the_kernel_has_it() {
        let proc_root = tempfile::tempdir().unwrap();
        let attr = proc_root.path().join("self/attr");
        std::fs::create_dir_all(&attr).unwrap();
        std::fs::write(attr.join("exec"), "").unwrap();
        assert_eq!(exec_attr_path(proc_root.path()), attr.join("exec"), "an older kernel: the shared attribute");
        set_exec_profile(proc_root.path(), "berth-default").unwrap();
        assert_eq!(std::fs::read_to_string(attr.join("exec")).unwrap(), "exec berth-default");

        std::fs::create_dir_all(attr.join("apparmor")).unwrap();
        std::fs::write(attr.join("apparmor/exec"), "").unwrap();
        assert_eq!(exec_attr_path(proc_root.path()), attr.join("apparmor/exec"));
        set_exec_profile(proc_root.path(), "k8s-deny-write").unwrap();
        assert_eq!(std::fs::read_to_string(attr.join("apparmor/exec")).unwrap(), "exec k8s-deny-write");
    }

    #[test]
    fn a_missing_attribute_fails_the_start_naming_the_profile() {
        let proc_root = tempfile::tempdir().unwrap();
        let e = set_exec_profile(proc_root.path(), "p1").unwrap_err().to_string();
        assert!(e.contains("apparmorProfile \"p1\"") && e.contains("self/attr/exec"), "{e}");
    }
}
