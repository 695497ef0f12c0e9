//! The systemd form of an OCI `linux.cgroupsPath` and where it lives in
//! the cgroup tree. Pure functions, no D-Bus.
//!
//! Under the systemd driver the kubelet names a pod's cgroup parent as a
//! slice (`kubepods-burstable-pod<uid>.slice`), and a runtime writes the
//! container's `cgroupsPath` as `slice:prefix:name`. The container runs in
//! the transient scope `prefix-name.scope` inside that slice. systemd nests
//! slices by their dashes: `a-b-c.slice` lives in `a-b.slice`, which lives
//! in `a.slice`, so its cgroup is `/a.slice/a-b.slice/a-b-c.slice`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The slice a scope goes to when the path names none (as runc does).
pub const DEFAULT_SLICE: &str = "system.slice";

/// `slice:prefix:name`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdCgroupsPath {
    pub slice: String,
    pub prefix: String,
    pub name: String,
}

impl SystemdCgroupsPath {
    /// Parses `slice:prefix:name`; an empty slice means [`DEFAULT_SLICE`].
    pub fn parse(path: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidSystemdPath { path: path.to_string(), reason: reason.to_string() };
        let mut parts = path.split(':');
        let (Some(slice), Some(prefix), Some(name), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("want slice:prefix:name"));
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        let slice = if slice.is_empty() { DEFAULT_SLICE } else { slice };
        check_slice_name(slice).map_err(|reason| invalid(&reason))?;
        let parsed = Self { slice: slice.to_string(), prefix: prefix.to_string(), name: name.to_string() };
        check_unit_name(&parsed.unit_name()).map_err(|reason| invalid(&reason))?;
        Ok(parsed)
    }

    /// The transient unit: `prefix-name.scope`, or the name itself when it
    /// already is a slice (a pod-level cgroup).
    pub fn unit_name(&self) -> String {
        if self.name.ends_with(".slice") {
            self.name.clone()
        } else if self.prefix.is_empty() {
            format!("{}.scope", self.name)
        } else {
            format!("{}-{}.scope", self.prefix, self.name)
        }
    }

    /// The unit's cgroup, relative to the hierarchy root.
    pub fn cgroupfs_path(&self) -> PathBuf {
        // Both names were checked by `parse`.
        let mut path = expand_slice(&self.slice).unwrap_or_default();
        path.push(self.unit_name());
        path
    }
}

/// True when `path` has the `slice:prefix:name` form rather than a
/// cgroupfs path.
pub fn is_systemd_form(path: &str) -> bool {
    !path.starts_with('/') && path.split(':').count() == 3
}

/// True for a slice unit name such as `kubepods-burstable.slice`: what a
/// kubelet with the systemd driver sends as a cgroup parent.
pub fn is_slice_name(name: &str) -> bool {
    check_slice_name(name).is_ok()
}

/// `a-b-c.slice` -> `/a.slice/a-b.slice/a-b-c.slice` (relative, no
/// leading `/`); the root slice `-.slice` is the root itself.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    check_slice_name(slice).map_err(|reason| Error::InvalidSystemdPath { path: slice.to_string(), reason })?;
    let stem = slice.trim_end_matches(".slice");
    let mut path = PathBuf::new();
    if stem == "-" {
        return Ok(path);
    }
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

fn check_slice_name(slice: &str) -> std::result::Result<(), String> {
    let Some(stem) = slice.strip_suffix(".slice") else { return Err(format!("{slice:?} is not a slice (no .slice suffix)")) };
    if stem == "-" {
        return Ok(());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(format!("{slice:?} is not a valid slice name (empty part between dashes)"));
    }
    check_unit_name(slice)
}

/// systemd's unit name rules: at most 255 bytes, only `[A-Za-z0-9:_.\-@]`
/// (and `\` escapes), which also keeps `/` and `..` out of the cgroup path.
fn check_unit_name(unit: &str) -> std::result::Result<(), String> {
    if unit.len() > 255 {
        return Err(format!("unit name {unit:?} is longer than 255 bytes"));
    }
    match unit.chars().find(|c| !(c.is_ascii_alphanumeric() || ":_.-@\\".contains(*c))) {
        Some(c) => Err(format!("unit name {unit:?} has {c:?}, which systemd does not allow")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_slices_expand_by_their_dashes() {
        assert_eq!(
            expand_slice("kubepods-burstable-pod0a1b.slice").unwrap(),
            PathBuf::from("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b.slice")
        );
        assert_eq!(expand_slice("system.slice").unwrap(), PathBuf::from("system.slice"));
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::new());
    }

    #[test]
    fn a_container_path_names_its_scope_and_cgroup() {
        let p = SystemdCgroupsPath::parse("kubepods-besteffort-pod1.slice:berth:abc123").unwrap();
        assert_eq!(p.unit_name(), "berth-abc123.scope");
        assert_eq!(p.cgroupfs_path(), PathBuf::from("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/berth-abc123.scope"));
        let default_slice = SystemdCgroupsPath::parse(":berth-shim:abc").unwrap();
        assert_eq!(default_slice.cgroupfs_path(), PathBuf::from("system.slice/berth-shim-abc.scope"));
        assert_eq!(SystemdCgroupsPath::parse("a.slice::x").unwrap().unit_name(), "x.scope");
        assert_eq!(SystemdCgroupsPath::parse("a.slice:p:a-b.slice").unwrap().unit_name(), "a-b.slice");
    }

    #[test]
    fn forms_are_told_apart() {
        assert!(is_systemd_form("kubepods.slice:berth:abc"));
        assert!(!is_systemd_form("/kubepods/burstable/pod1/abc"));
        assert!(!is_systemd_form("kubepods/abc"));
        assert!(is_slice_name("kubepods-burstable-pod1.slice"));
        assert!(!is_slice_name("/kubepods/burstable"));
        assert!(!is_slice_name("kubepods"));
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        for (bad, why) in [
            ("kubepods.slice:berth", "slice:prefix:name"),
            ("kubepods.slice:berth:", "name is empty"),
            ("kubepods:berth:abc", "not a slice"),
            ("a--b.slice:berth:abc", "empty part"),
            ("-a.slice:berth:abc", "empty part"),
            ("a.slice:berth:../../etc", "does not allow"),
            ("a/b.slice:berth:x", "does not allow"),
            ("a.slice:berth:x:y", "slice:prefix:name"),
        ] {
            let err = SystemdCgroupsPath::parse(bad).unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
            assert!(err.is_invalid_input(), "{bad}");
        }
        assert!(SystemdCgroupsPath::parse(&format!("a.slice:p:{}", "x".repeat(300))).is_err());
    }
}
