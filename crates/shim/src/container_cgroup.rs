//! A container's cgroup under either driver, as the spec's
//! `linux.cgroupsPath` names it: a cgroupfs path the shim makes itself, or
//! `slice:prefix:name`, a transient scope systemd makes with the
//! container's first process in it.

use std::path::Path;

use berth_cgroups::{systemd::Scope, Cgroup, CgroupsPath, Hierarchy};
use oci_spec::runtime::{LinuxResources, Spec};

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
    pub fn for_container(spec: &Spec, id: &str) -> Result<Self> {
        let linux = spec.linux().as_ref();
        let path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| Path::new("berth").join(id).display().to_string());
        let resources = linux.and_then(|l| l.resources().clone());
        Self::new(&path, resources, format!("berth container {id}"))
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

    /// Puts a later process (an exec) in.
    pub fn join(&self, pid: i32) -> Result<()> {
        Ok(self.cgroup().add_process(pid)?)
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
