//! A cgroup as the host running the tests mounts it: the same test reads
//! `memory.limit_in_bytes` on a v1 host and `memory.max` on a v2 host, and
//! a cleanup check looks in every hierarchy, so no test passes on one
//! layout by looking where the other keeps its files.

use std::path::{Path, PathBuf};

use berth_cgroups::{Cgroup, Hierarchy, Version};

/// One cgroup (`/berth-test/x`, or a systemd `slice:prefix:name`), in
/// every hierarchy of this host.
pub struct HostCgroup {
    cgroup: Cgroup,
    hierarchy: Hierarchy,
}

impl HostCgroup {
    pub fn new(cgroups_path: &str) -> HostCgroup {
        let hierarchy = Hierarchy::detect().expect("detect the host's cgroup hierarchy");
        let cgroup = Cgroup::from_cgroups_path(hierarchy.clone(), cgroups_path).unwrap_or_else(|e| panic!("cgroup {cgroups_path}: {e}"));
        HostCgroup { cgroup, hierarchy }
    }

    pub fn version(&self) -> Version {
        self.hierarchy.version()
    }

    /// The directory holding `controller`'s files: its v1 mount, or on a
    /// hybrid host the cgroup2 mount when only that has it, or the one v2
    /// directory. Panics when the host has no such controller at all, so a
    /// test never checks nothing.
    pub fn dir(&self, controller: &str) -> PathBuf {
        let path = self.cgroup.path();
        match self.hierarchy.version() {
            Version::V2 => {
                assert!(controllers_at(self.hierarchy.root()).iter().any(|c| c == controller), "this v2 host has no {controller} controller");
                self.hierarchy.root().join(path)
            }
            Version::V1 => {
                if let Some(mount) = self.hierarchy.v1_controller(controller) {
                    return mount.join(path);
                }
                match self.hierarchy.unified() {
                    Some(unified) if controllers_at(unified).iter().any(|c| c == controller) => unified.join(path),
                    _ => panic!("this host mounts no {controller} controller"),
                }
            }
        }
    }

    /// Whether `controller`'s files are v2's (`memory.max`) or v1's
    /// (`memory.limit_in_bytes`) for this cgroup on this host.
    pub fn is_v2(&self, controller: &str) -> bool {
        self.hierarchy.version() == Version::V2 || self.hierarchy.v1_controller(controller).is_none()
    }

    /// Reads `controller`'s file, by its v1 or its v2 name.
    pub fn read(&self, controller: &str, v1_file: &str, v2_file: &str) -> String {
        let file = self.dir(controller).join(if self.is_v2(controller) { v2_file } else { v1_file });
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display())).trim().to_string()
    }

    /// The memory limit in bytes (`u64::MAX` for none).
    pub fn memory_limit(&self) -> u64 {
        let text = self.read("memory", "memory.limit_in_bytes", "memory.max");
        if text == "max" {
            u64::MAX
        } else {
            text.parse().unwrap_or_else(|_| panic!("memory limit {text:?}"))
        }
    }

    /// The process ids in the cgroup.
    pub fn procs(&self) -> Vec<i32> {
        self.cgroup.procs().unwrap_or_default()
    }

    /// Every directory this cgroup has or would have, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.cgroup.dirs()
    }

    /// The directories of this cgroup that exist (a cleanup check wants
    /// none).
    pub fn existing_dirs(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().filter(|d| d.is_dir()).collect()
    }
}

/// Every process id in the cgroup directory `dir` and the cgroups below it.
pub fn pids_below(dir: &Path) -> Vec<u32> {
    fn collect(dir: &Path, pids: &mut Vec<u32>) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&entry.path(), pids);
            }
        }
    }
    let mut pids = Vec::new();
    collect(dir, &mut pids);
    pids
}

/// The controllers a cgroup2 directory offers its children.
fn controllers_at(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default().split_whitespace().map(String::from).collect()
}

/// The cgroup path of `pid` in each hierarchy, as `/proc/PID/cgroup` says:
/// (`memory`, `/berth-test/x`), (`name=systemd`, ...), (`` for cgroup2, ...).
pub fn proc_cgroups(pid: u32) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}
