//! A container's (or a shim's) transient scope, and the cgroup under it.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use oci_spec::runtime::LinuxResources;

use super::{
    manager,
    properties::{resource_properties, scope_properties},
    unit_path::SystemdCgroupsPath,
};
use crate::{error::Result, Cgroup};

/// A scope berth asks systemd for. The scope exists from [`Scope::start`]
/// until [`Scope::stop`]; its cgroup is [`Scope::cgroup`] in every
/// hierarchy.
#[derive(Debug, Clone)]
pub struct Scope {
    path: SystemdCgroupsPath,
    cgroup: Cgroup,
    /// Whether this scope was started by us. A scope of the same name that
    /// someone else started (systemd refused ours because of it) must
    /// survive our cleanup.
    started: Arc<AtomicBool>,
}

impl Scope {
    pub fn new(path: SystemdCgroupsPath, cgroup: Cgroup) -> Self {
        Self { path, cgroup, started: Arc::default() }
    }

    pub fn unit(&self) -> String {
        self.path.unit_name()
    }

    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Whether [`Scope::start`] got systemd to start it: until then the
    /// cgroup at this path (if any) belongs to someone else.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Has systemd start the scope with `pid` in it and the limits it
    /// manages, then makes the cgroup in the hierarchies systemd leaves
    /// alone (on a hybrid host: cpuset, freezer, hugetlb...), moves `pid`
    /// there too, and writes every limit through cgroupfs, as the cgroupfs
    /// driver would. If that fails the scope is stopped again.
    pub fn start(&self, pid: i32, resources: Option<&LinuxResources>, description: &str) -> Result<()> {
        let version = self.cgroup.version();
        let mut properties = scope_properties(&self.path.slice, description, pid as u32, version);
        if let Some(r) = resources {
            properties.extend(resource_properties(r, version)?);
        }
        manager::start_transient_unit(&self.unit(), &properties)?;
        self.started.store(true, Ordering::SeqCst);
        let joined = self.cgroup.create(resources).and_then(|()| self.cgroup.add_process(pid));
        if joined.is_err() {
            let _ = self.stop();
        }
        joined
    }

    /// UpdateContainerResources: systemd's properties first (so a later
    /// re-apply by systemd keeps the new values), then cgroupfs.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        manager::set_unit_properties(&self.unit(), &resource_properties(resources, self.cgroup.version())?)?;
        self.cgroup.apply(resources)
    }

    /// Stops the scope (systemd removes the cgroups it made) and removes
    /// what berth made beside them. Safe to call again; does nothing for a
    /// scope that was never started here.
    pub fn stop(&self) -> Result<()> {
        if !self.started.load(Ordering::SeqCst) {
            return Ok(());
        }
        manager::stop_unit(&self.unit())?;
        self.cgroup.delete()
    }
}
