//! A container's cgroup under either driver, as the spec's
//! `linux.cgroupsPath` names it: a cgroupfs path the shim makes itself, or
//! `slice:prefix:name`, a transient scope systemd makes with the
//! container's first process in it.

use std::path::Path;

use std::time::{Duration, Instant};

use berth_cgroups::{systemd::Scope, Cgroup, CgroupsPath, Hierarchy};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources, Spec};

use crate::error::Result;

#[derive(Debug, Clone)]
pub enum ContainerCgroup {
    /// Made and limited before the init joins it.
    Cgroupfs(Cgroup),
    /// Started (and limited) by systemd when the init joins it. The
    /// resources are boxed: they are most of the variant's size.
    Systemd { scope: Scope, resources: Option<Box<LinuxResources>>, description: String },
}

impl ContainerCgroup {
    /// The container's cgroup from its spec; `berth/<id>` when the spec
    /// names none. A cgroupfs cgroup exists (with its limits) when this
    /// returns; a scope comes with the first process (`start_with`).
    pub fn for_container(spec: &Spec, id: &str) -> Result<(Self, String)> {
        let linux = spec.linux().as_ref();
        let path = cgroups_path_of(linux.and_then(|l| l.cgroups_path().as_ref()).map(|p| p.display().to_string()).as_deref(), id);
        let resources = linux.and_then(|l| l.resources().clone()).map(allow_default_devices);
        Ok((Self::new(&path, resources, format!("berth container {id}"))?, path))
    }

    /// The cgroup of a container created before (by an earlier
    /// `berth-runtime create`), to change its limits: nothing is made.
    pub fn existing(path: &str) -> Result<Self> {
        let hierarchy = Hierarchy::detect()?;
        Ok(match CgroupsPath::parse(path)? {
            CgroupsPath::Cgroupfs(path) => Self::Cgroupfs(Cgroup::new(hierarchy, path)?),
            CgroupsPath::Systemd(path) => {
                let cgroup = Cgroup::new(hierarchy, path.cgroupfs_path())?;
                Self::Systemd { scope: Scope::new(path, cgroup), resources: None, description: String::new() }
            }
        })
    }

    /// `resources` are applied to a cgroupfs cgroup at once, to a scope
    /// when it starts.
    pub fn new(path: &str, resources: Option<LinuxResources>, description: String) -> Result<Self> {
        let hierarchy = Hierarchy::detect()?;
        match CgroupsPath::parse(path)? {
            CgroupsPath::Cgroupfs(path) => {
                let cgroup = Cgroup::new(hierarchy, path)?;
                if let Err(e) = cgroup.create(resources.as_ref()) {
                    let _ = cgroup.delete();
                    return Err(e.into());
                }
                Ok(Self::Cgroupfs(cgroup))
            }
            CgroupsPath::Systemd(path) => {
                let cgroup = Cgroup::new(hierarchy, path.cgroupfs_path())?;
                Ok(Self::Systemd { scope: Scope::new(path, cgroup), resources: resources.map(Box::new), description })
            }
        }
    }

    pub fn cgroup(&self) -> &Cgroup {
        match self {
            Self::Cgroupfs(cgroup) => cgroup,
            Self::Systemd { scope, .. } => scope.cgroup(),
        }
    }

    /// Whether the cgroup is the container's own: a scope is once systemd
    /// started it for us. Before that, a unit of the same name (the reason
    /// systemd refused ours) must not be killed or removed by our cleanup.
    pub fn is_ours(&self) -> bool {
        match self {
            Self::Cgroupfs(_) => true,
            Self::Systemd { scope, .. } => scope.is_started(),
        }
    }

    /// Puts the container's first process in: for systemd, this starts the
    /// scope.
    pub fn start_with(&self, pid: i32) -> Result<()> {
        match self {
            Self::Cgroupfs(cgroup) => Ok(cgroup.add_process(pid)?),
            Self::Systemd { scope, resources, description } => Ok(scope.start(pid, resources.as_deref(), description)?),
        }
    }

    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        match self {
            Self::Cgroupfs(cgroup) => Ok(cgroup.apply(resources)?),
            Self::Systemd { scope, .. } => Ok(scope.update(resources)?),
        }
    }

    /// Removes the cgroup (stops the scope); the processes must be gone.
    pub fn remove(&self) -> Result<()> {
        match self {
            Self::Cgroupfs(cgroup) => Ok(cgroup.delete()?),
            Self::Systemd { scope, .. } => Ok(scope.stop()?),
        }
    }
}

/// The cgroup a container's spec names (`linux.cgroupsPath`), or
/// `berth/<id>` when it names none.
pub fn cgroups_path_of(spec_path: Option<&str>, id: &str) -> String {
    spec_path.filter(|p| !p.is_empty()).map(String::from).unwrap_or_else(|| Path::new("berth").join(id).display().to_string())
}

/// Kills every process left in a container's cgroup and removes it (stops
/// its scope), creating nothing: the container's Delete, an undone Create,
/// and containerd's `delete` after the shim that made it is gone. A cgroup
/// that is not there is fine.
pub fn remove_leftover(path: &str) -> Result<()> {
    let hierarchy = Hierarchy::detect()?;
    let parsed = CgroupsPath::parse(path)?;
    let cgroup = Cgroup::new(hierarchy, parsed.cgroupfs_path())?;
    if cgroup.exists() {
        cgroup.kill_all()?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while cgroup.procs().map(|p| !p.is_empty()).unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let CgroupsPath::Systemd(unit_path) = &parsed {
        // The scope is named after the container: nobody else's unit.
        berth_cgroups::systemd::stop_unit(&unit_path.unit_name())?;
    }
    Ok(cgroup.delete()?)
}

/// The devices every container may use whatever its spec's device rules
/// say, appended after them as runc does (its `AllowedDevices`): containerd's
/// CRI denies all devices and counts on the runtime to allow these. Specs
/// without device rules are left alone (nothing is denied then).
fn allow_default_devices(mut resources: LinuxResources) -> LinuxResources {
    let Some(rules) = resources.devices().clone().filter(|r| !r.is_empty()) else { return resources };
    let allow = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| -> Option<LinuxDeviceCgroup> {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(true).typ(typ).access(access);
        if let Some(major) = major {
            b = b.major(major);
        }
        if let Some(minor) = minor {
            b = b.minor(minor);
        }
        b.build().ok()
    };
    let defaults = [
        allow(LinuxDeviceType::C, None, None, "m"), // mknod of any device (it still needs CAP_MKNOD)
        allow(LinuxDeviceType::B, None, None, "m"),
        allow(LinuxDeviceType::C, Some(1), Some(3), "rwm"),    // null
        allow(LinuxDeviceType::C, Some(1), Some(5), "rwm"),    // zero
        allow(LinuxDeviceType::C, Some(1), Some(7), "rwm"),    // full
        allow(LinuxDeviceType::C, Some(1), Some(8), "rwm"),    // random
        allow(LinuxDeviceType::C, Some(1), Some(9), "rwm"),    // urandom
        allow(LinuxDeviceType::C, Some(5), Some(0), "rwm"),    // tty
        allow(LinuxDeviceType::C, Some(5), Some(2), "rwm"),    // ptmx
        allow(LinuxDeviceType::C, Some(136), None, "rwm"),     // pts/*
        allow(LinuxDeviceType::C, Some(10), Some(200), "rwm"), // net/tun
    ];
    let mut all = rules;
    all.extend(defaults.into_iter().flatten());
    resources.set_devices(Some(all));
    resources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_devices_follow_the_spec_rules() {
        let deny_all = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap();
        let mut r = LinuxResources::default();
        r.set_devices(Some(vec![deny_all.clone()]));
        let devices = allow_default_devices(r).devices().clone().unwrap();
        assert_eq!(devices[0], deny_all);
        assert_eq!(devices.len(), 12);
        assert!(devices.iter().any(|d| d.allow() && d.major() == Some(1) && d.minor() == Some(3)));
        assert_eq!(allow_default_devices(LinuxResources::default()).devices(), &None);
    }

    #[test]
    fn default_cgroup_path() {
        assert_eq!(cgroups_path_of(Some("/kubepods/pod1/c1"), "c1"), "/kubepods/pod1/c1");
        assert_eq!(cgroups_path_of(Some(""), "c1"), "berth/c1");
        assert_eq!(cgroups_path_of(None, "c1"), "berth/c1");
    }
}
