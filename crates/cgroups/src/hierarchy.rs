//! Where the cgroup filesystems are mounted, and which version is in charge.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The mounted cgroup hierarchies. On a v1 (or hybrid) host every controller
/// has its own mount point; on a v2 host there is one unified root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    version: Version,
    /// v2: the unified mount; v1: the parent of the controller mounts.
    root: PathBuf,
    /// v1 only: controller name (`memory`, `cpu`, `name=systemd`) -> mount.
    /// Co-mounted controllers (`cpu,cpuacct`) appear under each name.
    v1: BTreeMap<String, PathBuf>,
    /// Hybrid hosts only: the cgroup2 mount beside the v1 controllers
    /// (`/sys/fs/cgroup/unified`). Processes join it under the same path as
    /// in v1, as runc does, and the controllers that live only there (a
    /// kernel gives a controller to cgroup2 when no v1 hierarchy binds it,
    /// typically hugetlb) are used through it.
    unified: Option<PathBuf>,
}

impl Hierarchy {
    /// A host whose `/sys/fs/cgroup` (or any cgroup2 mount, when no v1
    /// controller is mounted) is cgroup2 is v2; a hybrid host (v1
    /// controllers plus an empty `unified` cgroup2) is v1, because the
    /// controllers that limit anything live in v1 there.
    ///
    /// Every shim and runtime step asks this once. The hierarchies are
    /// looked up where every distribution mounts them first (see
    /// [`Self::at_standard_mounts`]); only a host that mounts them elsewhere
    /// costs a read of `/proc/self/mountinfo`, whose size grows with every
    /// pod's mounts (with 110 pods, these reads were a tenth of the CPU a
    /// node spent starting pods).
    pub fn detect() -> Result<Self> {
        let standard =
            std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|own| Self::at_standard_mounts(Path::new(STANDARD_ROOT), &own, filesystem_of));
        if let Some(found) = standard {
            return Ok(found);
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Detect(format!("read /proc/self/mountinfo: {e}")))?;
        Self::from_mountinfo(&text)
    }

    /// The hierarchies, if each one this process belongs to
    /// (`/proc/self/cgroup`, given as `own`) is mounted at its standard
    /// place under `root`: cgroup2 at `root` itself (v2), or each v1
    /// hierarchy at `root/<its controllers>` (`cpu,cpuacct`, `systemd` for
    /// `name=systemd`) with cgroup2, if mounted, at `root/unified`.
    /// `filesystem` tells what is mounted at a path (statfs(2)). None when
    /// anything differs, for the caller to read the mount table instead.
    fn at_standard_mounts(root: &Path, own: &str, filesystem: impl Fn(&Path) -> Option<CgroupFs>) -> Option<Self> {
        // "<id>:<controllers>:<path>"; id 0 is cgroup2, whose line is there
        // whether or not it is mounted.
        let v1_lines: Vec<&str> = own.lines().filter_map(|l| l.split(':').nth(1).filter(|_| !l.starts_with("0:"))).collect();
        match filesystem(root) {
            Some(CgroupFs::V2) if v1_lines.is_empty() => Some(Self::v2(root)),
            Some(CgroupFs::Tmpfs) if !v1_lines.is_empty() => {
                let mut v1 = BTreeMap::new();
                for controllers in v1_lines {
                    let names: Vec<&str> = controllers.split(',').filter(|c| is_v1_controller(c)).collect();
                    if names.is_empty() {
                        continue;
                    }
                    let dir = root.join(names.iter().map(|n| n.trim_start_matches("name=")).collect::<Vec<_>>().join(","));
                    if filesystem(&dir) != Some(CgroupFs::V1) {
                        return None;
                    }
                    for name in names {
                        v1.insert(name.to_string(), dir.clone());
                    }
                }
                if v1.is_empty() {
                    return None;
                }
                let unified = Some(root.join("unified")).filter(|u| filesystem(u) == Some(CgroupFs::V2));
                Some(Self { version: Version::V1, root: root.to_path_buf(), v1, unified })
            }
            _ => None,
        }
    }

    pub fn from_mountinfo(text: &str) -> Result<Self> {
        let mut v1 = BTreeMap::new();
        let mut v2_root = None;
        for line in text.lines() {
            // mountinfo: id parent major:minor root mountpoint opts ... - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let mount_point = left.split_whitespace().nth(4).map(unescape);
            let mut right = right.split_whitespace();
            let (Some(fstype), Some(_source), Some(super_opts)) = (right.next(), right.next(), right.next()) else {
                continue;
            };
            let Some(mount_point) = mount_point else { continue };
            match fstype {
                "cgroup2" if (v2_root.is_none() || mount_point == Path::new("/sys/fs/cgroup")) => {
                    v2_root = Some(mount_point);
                }
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if is_v1_controller(opt) {
                            v1.entry(opt.to_string()).or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if !v1.is_empty() {
            let root = v1.values().next().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_default();
            return Ok(Self { version: Version::V1, root, v1, unified: v2_root });
        }
        match v2_root {
            Some(root) => Ok(Self { version: Version::V2, root, v1, unified: None }),
            None => Err(Error::Detect("no cgroup or cgroup2 filesystem is mounted".into())),
        }
    }

    /// A v2 hierarchy rooted at `root` (tests use a temp dir).
    pub fn v2(root: impl Into<PathBuf>) -> Self {
        Self { version: Version::V2, root: root.into(), v1: BTreeMap::new(), unified: None }
    }

    /// A v1 hierarchy with one directory per controller under `root`.
    pub fn v1(root: impl Into<PathBuf>, controllers: &[&str]) -> Self {
        let root = root.into();
        let v1 = controllers.iter().map(|c| (c.to_string(), root.join(c.trim_start_matches("name=")))).collect();
        Self { version: Version::V1, root, v1, unified: None }
    }

    /// A hybrid hierarchy: [`Self::v1`] plus a cgroup2 mount at `root/unified`.
    pub fn hybrid(root: impl Into<PathBuf>, controllers: &[&str]) -> Self {
        let root = root.into();
        let unified = Some(root.join("unified"));
        Self { unified, ..Self::v1(root, controllers) }
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Hybrid hosts only: the cgroup2 mount beside the v1 controllers.
    pub fn unified(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Mount point of a v1 controller, if mounted.
    pub fn v1_controller(&self, name: &str) -> Option<PathBuf> {
        self.v1.get(name).cloned()
    }

    /// v1 only: each mount point with the controllers mounted on it, e.g.
    /// (`/sys/fs/cgroup/cpu,cpuacct`, [`cpu`, `cpuacct`]).
    pub fn v1_mount_groups(&self) -> Vec<(PathBuf, Vec<String>)> {
        let mut groups: Vec<(PathBuf, Vec<String>)> = Vec::new();
        for (name, mount) in &self.v1 {
            match groups.iter_mut().find(|(m, _)| m == mount) {
                Some((_, names)) => names.push(name.clone()),
                None => groups.push((mount.clone(), vec![name.clone()])),
            }
        }
        groups
    }

    /// Distinct v1 mount points (co-mounted controllers once).
    pub fn v1_mounts(&self) -> impl Iterator<Item = &Path> {
        let mut seen: Vec<&Path> = Vec::new();
        for p in self.v1.values() {
            if !seen.contains(&p.as_path()) {
                seen.push(p);
            }
        }
        seen.into_iter()
    }
}

/// Where systemd (and every distribution without it) mounts the cgroup
/// filesystems.
const STANDARD_ROOT: &str = "/sys/fs/cgroup";

/// What statfs(2) finds at a path, as far as finding the hierarchies goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupFs {
    V1,
    V2,
    /// The tmpfs that holds the v1 mounts.
    Tmpfs,
    Other,
}

fn filesystem_of(path: &Path) -> Option<CgroupFs> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};
    let kind = statfs(path).ok()?.filesystem_type();
    Some(match kind {
        k if k == CGROUP_SUPER_MAGIC => CgroupFs::V1,
        k if k == CGROUP2_SUPER_MAGIC => CgroupFs::V2,
        k if k == TMPFS_MAGIC => CgroupFs::Tmpfs,
        _ => CgroupFs::Other,
    })
}

fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "blkio"
            | "pids"
            | "hugetlb"
            | "net_cls"
            | "net_prio"
            | "perf_event"
            | "rdma"
            | "misc"
    ) || opt.starts_with("name=")
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> PathBuf {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let n = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(n as char);
            i += 4;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    PathBuf::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
30 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_is_v1_with_each_controller() {
        let h = Hierarchy::from_mountinfo(HYBRID).unwrap();
        assert_eq!(h.version(), Version::V1);
        assert_eq!(h.v1_controller("memory").unwrap(), Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(h.v1_controller("name=systemd").unwrap(), Path::new("/sys/fs/cgroup/systemd"));
        assert!(h.v1_controller("pids").is_none());
        assert_eq!(h.v1_mounts().count(), 4);
        assert_eq!(h.unified(), Some(Path::new("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn comounted_controllers_share_one_mount() {
        let text = "26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = Hierarchy::from_mountinfo(text).unwrap();
        assert_eq!(h.v1_controller("cpu"), h.v1_controller("cpuacct"));
        assert_eq!(h.v1_mounts().count(), 1);
    }

    #[test]
    fn unified_host_is_v2() {
        let text = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_mountinfo(text).unwrap();
        assert_eq!(h.version(), Version::V2);
        assert_eq!(h.root(), Path::new("/sys/fs/cgroup"));
        assert_eq!(h.unified(), None, "the unified root is the root itself");
    }

    #[test]
    fn pure_v1_host_has_no_unified_mount() {
        let h = Hierarchy::from_mountinfo(&HYBRID.replace("cgroup2 cgroup2", "tmpfs tmpfs")).unwrap();
        assert_eq!(h.version(), Version::V1);
        assert_eq!(h.unified(), None);
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        assert!(Hierarchy::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").is_err());
    }

    /// This machine's own hierarchies: the standard places say what the
    /// mount table says (hybrid here, v2 in the test VM).
    #[test]
    fn detect_agrees_with_the_mount_table() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let standard = Hierarchy::at_standard_mounts(Path::new(STANDARD_ROOT), &own, filesystem_of);
        assert_eq!(standard.as_ref(), Some(&Hierarchy::from_mountinfo(&text).unwrap()), "this host mounts its cgroups at the standard places");
        assert_eq!(standard, Some(Hierarchy::detect().unwrap()));
    }

    fn mounted(table: &'static [(&'static str, CgroupFs)]) -> impl Fn(&Path) -> Option<CgroupFs> {
        move |p| table.iter().find(|(at, _)| Path::new(at) == p).map(|(_, fs)| *fs)
    }

    const HYBRID_OWN: &str = "5:memory:/user\n4:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n";

    #[test]
    fn standard_hybrid_mounts_are_found_without_the_mount_table() {
        let fs = mounted(&[
            ("/c", CgroupFs::Tmpfs),
            ("/c/memory", CgroupFs::V1),
            ("/c/cpu,cpuacct", CgroupFs::V1),
            ("/c/systemd", CgroupFs::V1),
            ("/c/unified", CgroupFs::V2),
        ]);
        let h = Hierarchy::at_standard_mounts(Path::new("/c"), HYBRID_OWN, fs).unwrap();
        assert_eq!(h.version(), Version::V1);
        assert_eq!(h.v1_controller("cpuacct").unwrap(), Path::new("/c/cpu,cpuacct"));
        assert_eq!(h.v1_controller("name=systemd").unwrap(), Path::new("/c/systemd"));
        assert_eq!(h.v1_mounts().count(), 3);
        assert_eq!(h.unified(), Some(Path::new("/c/unified")));
    }

    #[test]
    fn standard_v2_mount_is_found_without_the_mount_table() {
        let h = Hierarchy::at_standard_mounts(Path::new("/c"), "0::/\n", mounted(&[("/c", CgroupFs::V2)])).unwrap();
        assert_eq!(h, Hierarchy::v2("/c"));
    }

    /// Anything off the standard places leaves it to the mount table.
    #[test]
    fn hierarchies_elsewhere_fall_back_to_the_mount_table() {
        let fs = mounted(&[("/c", CgroupFs::Tmpfs), ("/c/memory", CgroupFs::V1), ("/c/cpu,cpuacct", CgroupFs::V1)]);
        assert_eq!(Hierarchy::at_standard_mounts(Path::new("/c"), HYBRID_OWN, fs), None, "name=systemd is not at /c/systemd");
        let fs = mounted(&[("/c", CgroupFs::Tmpfs), ("/c/memory", CgroupFs::Tmpfs)]);
        assert_eq!(Hierarchy::at_standard_mounts(Path::new("/c"), "5:memory:/\n", fs), None, "/c/memory is no cgroup");
        // A v1 hierarchy besides a cgroup2 root: from_mountinfo decides.
        assert_eq!(Hierarchy::at_standard_mounts(Path::new("/c"), HYBRID_OWN, mounted(&[("/c", CgroupFs::V2)])), None);
        assert_eq!(Hierarchy::at_standard_mounts(Path::new("/c"), "0::/\n", mounted(&[("/c", CgroupFs::Other)])), None);
        assert_eq!(Hierarchy::at_standard_mounts(Path::new("/c"), "0::/\n", mounted(&[])), None);
    }

    #[test]
    fn escaped_mount_points() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
    }
}
