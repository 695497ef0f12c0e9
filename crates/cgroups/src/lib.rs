//! cgroup v1 and v2 through the cgroupfs driver.
//!
//! Synchronous on purpose: it runs in `berth-shim` (no tokio) and in the
//! single-threaded container init. Every path is built from a [`Hierarchy`],
//! which is detected from `/proc/self/mountinfo` in production and built by
//! hand over a temp dir in tests, so the v2 code runs here even on a v1 host.

mod error;
mod fs;
mod hierarchy;
mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

pub use error::{Error, Result};
pub use hierarchy::{Hierarchy, Version};
pub use stats::{CpuStats, HugetlbStats, MemoryStats, PidsStats, Stats};

/// One cgroup: a relative path (e.g. `kubepods/pod1/ctr`) in a hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    path: PathBuf,
}

/// An OCI `linux.cgroupsPath` in either driver's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupsPath {
    /// `/kubepods/burstable/pod<uid>/<id>`: a directory, made by the runtime.
    Cgroupfs(PathBuf),
    /// `<slice>:<prefix>:<name>`: a transient scope, made by systemd.
    Systemd(systemd::SystemdCgroupsPath),
}

impl CgroupsPath {
    pub fn parse(path: &str) -> Result<Self> {
        if systemd::is_systemd_form(path) {
            systemd::SystemdCgroupsPath::parse(path).map(Self::Systemd)
        } else {
            Ok(Self::Cgroupfs(PathBuf::from(path)))
        }
    }

    /// Where the cgroup is in each hierarchy, relative to its root.
    pub fn cgroupfs_path(&self) -> PathBuf {
        match self {
            Self::Cgroupfs(path) => path.clone(),
            Self::Systemd(path) => path.cgroupfs_path(),
        }
    }
}

impl Cgroup {
    /// The cgroup an OCI `linux.cgroupsPath` of either form names.
    pub fn from_cgroups_path(hierarchy: Hierarchy, path: &str) -> Result<Self> {
        Self::new(hierarchy, CgroupsPath::parse(path)?.cgroupfs_path())
    }

    /// `path` is the OCI `linux.cgroupsPath` in cgroupfs form; a leading `/`
    /// is allowed and means the hierarchy root, as runc reads it.
    pub fn new(hierarchy: Hierarchy, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let relative: PathBuf = path.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        if relative.as_os_str().is_empty() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(Error::InvalidPath(path.to_path_buf()));
        }
        Ok(Self { hierarchy, path: relative })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> Version {
        self.hierarchy.version()
    }

    /// Creates the cgroup (and missing parents) and applies `resources`.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        self.make()?;
        if let Some(resources) = resources {
            self.apply(resources)?;
        }
        Ok(())
    }

    /// Makes the cgroup's directories (in every hierarchy), no limits: for
    /// a caller that sets none, without linking the code that would.
    pub fn make(&self) -> Result<()> {
        match self.hierarchy.version() {
            Version::V1 => v1::create(&self.hierarchy, &self.path),
            Version::V2 => v2::create(&self.hierarchy, &self.path),
        }
    }

    /// Writes the limits in `resources`; fields that are `None` are left alone,
    /// so this serves both create and a later UpdateContainerResources.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        match self.hierarchy.version() {
            Version::V1 => v1::apply(&self.hierarchy, &self.path, resources),
            Version::V2 => v2::apply(&self.hierarchy, &self.path, resources),
        }
    }

    /// Moves `pid` (0 = the caller) into this cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            fs::write(&dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Pids of every process in the cgroup.
    pub fn procs(&self) -> Result<Vec<i32>> {
        let dir = self.main_dir();
        let text = fs::read(&dir, "cgroup.procs")?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    pub fn stats(&self) -> Result<Stats> {
        match self.hierarchy.version() {
            Version::V1 => v1::stats(&self.hierarchy, &self.path),
            Version::V2 => v2::stats(&self.hierarchy, &self.path),
        }
    }

    /// Sends SIGKILL to every process, freezing the cgroup first where the
    /// kernel allows so a forking process cannot escape between read and kill.
    pub fn kill_all(&self) -> Result<()> {
        match self.hierarchy.version() {
            Version::V1 => v1::kill_all(&self.hierarchy, &self.path, || self.procs()),
            Version::V2 => v2::kill_all(&self.hierarchy, &self.path, || self.procs()),
        }
    }

    /// Removes the leaf directory in every hierarchy (never the parents the
    /// caller gave). Missing directories are fine: delete is idempotent.
    pub fn delete(&self) -> Result<()> {
        for dir in self.dirs() {
            fs::remove_dir_retrying(&dir)?;
        }
        Ok(())
    }

    /// Whether the cgroup exists (in its main hierarchy).
    pub fn exists(&self) -> bool {
        self.main_dir().is_dir()
    }

    /// The directory that holds the cgroup in each mounted hierarchy
    /// (on a hybrid host, the cgroup2 mount too).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self.hierarchy.version() {
            Version::V1 => self.hierarchy.v1_mounts().chain(self.hierarchy.unified()).map(|m| m.join(&self.path)).collect(),
            Version::V2 => vec![self.hierarchy.root().join(&self.path)],
        }
    }

    /// The directory read for `cgroup.procs`: memory (always present in
    /// practice) on v1, the only one on v2.
    fn main_dir(&self) -> PathBuf {
        match self.hierarchy.version() {
            Version::V1 => self
                .hierarchy
                .v1_controller("memory")
                .or_else(|| self.hierarchy.v1_mounts().next().map(Path::to_path_buf))
                .unwrap_or_else(|| self.hierarchy.root().to_path_buf())
                .join(&self.path),
            Version::V2 => self.hierarchy.root().join(&self.path),
        }
    }
}
