//! cgroup v1: one directory per controller mount.

use std::{
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

use crate::{
    error::{Error, Result},
    fs,
    hierarchy::Hierarchy,
    stats::{HugetlbStats, Stats},
    v2,
};

/// USER_HZ: the unit of cpuacct.stat. It is 100 on every Linux ABI.
const USER_HZ: u64 = 100;

pub fn create(h: &Hierarchy, path: &Path) -> Result<()> {
    for mount in h.v1_mounts() {
        fs::create_dir_all(&mount.join(path))?;
    }
    if let Some(cpuset) = h.v1_controller("cpuset") {
        inherit_cpuset(&cpuset, path)?;
    }
    if let Some(unified) = h.unified() {
        v2::create_at(unified, path)?;
    }
    Ok(())
}

/// A new v1 cpuset cgroup starts with empty `cpus` and `mems`, and no task
/// can join it until they are filled: copy them down from the parents.
fn inherit_cpuset(mount: &Path, path: &Path) -> Result<()> {
    let mut dir = mount.to_path_buf();
    for component in path.components() {
        let parent = dir.clone();
        dir.push(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = fs::read_optional(&dir, file).unwrap_or_default();
            if current.trim().is_empty() {
                let from_parent = fs::read(&parent, file)?;
                fs::write(&dir, file, from_parent.trim())?;
            }
        }
    }
    Ok(())
}

pub fn apply(h: &Hierarchy, path: &Path, r: &LinuxResources) -> Result<()> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::InvalidResource { field: "unified", reason: "cgroup v2 (unified) keys given on a cgroup v1 host".into() });
    }
    let dir = |controller: &'static str| controller_dir(h, controller, path);
    if let Some(memory) = r.memory() {
        apply_memory(dir("memory"), memory)?;
    }
    if let Some(cpu) = r.cpu() {
        apply_cpu(dir("cpu"), dir("cpuset"), cpu)?;
    }
    if let Some(pids) = r.pids() {
        let d = dir("pids").ok_or(Error::MissingController { controller: "pids" })?;
        let value = if pids.limit() > 0 { pids.limit().to_string() } else { "max".into() };
        fs::write(&d, "pids.max", &value)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        match (dir("hugetlb"), unified_dir(h, "hugetlb", path)) {
            (Some(d), _) => {
                for l in limits {
                    fs::write(&d, &format!("hugetlb.{}.limit_in_bytes", l.page_size()), &l.limit().to_string())?;
                }
            }
            (None, Some(d)) => v2::apply_hugetlb(&d, limits)?,
            // The kubelet sends a (zero) limit for every page size the node
            // has; refusing every pod on a node without the controller would
            // be worse than not enforcing a limit nobody asked for.
            (None, None) => log::debug!("hugetlb controller not mounted; hugepage limits not enforced"),
        }
    }
    if let Some(devices) = r.devices() {
        if let Some(d) = dir("devices") {
            apply_devices(&d, devices)?;
        }
    }
    if let Some(block_io) = r.block_io() {
        if let (Some(weight), Some(d)) = (block_io.weight(), dir("blkio")) {
            // blkio.weight exists only with the BFQ/CFQ schedulers.
            if d.join("blkio.weight").exists() {
                fs::write(&d, "blkio.weight", &weight.to_string())?;
            } else if d.join("blkio.bfq.weight").exists() {
                fs::write(&d, "blkio.bfq.weight", &weight.to_string())?;
            }
        }
    }
    Ok(())
}

fn controller_dir(h: &Hierarchy, controller: &str, path: &Path) -> Option<PathBuf> {
    h.v1_controller(controller).map(|m| m.join(path))
}

/// Hybrid hosts: the cgroup's directory in the cgroup2 mount, when that
/// mount holds `controller` (no v1 hierarchy binds it).
fn unified_dir(h: &Hierarchy, controller: &str, path: &Path) -> Option<PathBuf> {
    let unified = h.unified()?;
    let available = fs::read_optional(unified, "cgroup.controllers")?;
    available.split_whitespace().any(|c| c == controller).then(|| unified.join(path))
}

fn apply_memory(dir: Option<PathBuf>, m: &LinuxMemory) -> Result<()> {
    let wants_limits = m.limit().is_some() || m.swap().is_some() || m.reservation().is_some();
    let Some(dir) = dir else {
        return if wants_limits { Err(Error::MissingController { controller: "memory" }) } else { Ok(()) };
    };
    let limit = m.limit().filter(|l| *l != 0);
    let swap = m.swap().filter(|s| *s != 0);
    if let (Some(limit), Some(swap)) = (limit, swap) {
        if swap != -1 && limit != -1 && swap < limit {
            return Err(Error::InvalidResource { field: "memory.swap", reason: format!("memory+swap {swap} is below the memory limit {limit}") });
        }
    }
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    // memory.limit_in_bytes may never exceed memsw.limit_in_bytes: when the
    // new limit is above the current memsw limit, raise memsw first.
    let current_memsw = fs::read_u64(&dir, "memory.memsw.limit_in_bytes").unwrap_or(u64::MAX);
    let memsw_first = limit.is_some_and(|l| l == -1 || l as u64 > current_memsw);
    let write_swap = |dir: &Path| -> Result<()> {
        match swap {
            Some(s) if has_memsw => fs::write(dir, "memory.memsw.limit_in_bytes", &s.to_string()),
            Some(_) => {
                log::debug!("swap accounting disabled; memory+swap limit not enforced");
                Ok(())
            }
            None => Ok(()),
        }
    };
    if memsw_first {
        write_swap(&dir)?;
    }
    if let Some(limit) = limit {
        if limit < -1 {
            return Err(Error::InvalidResource { field: "memory.limit", reason: format!("{limit} is negative") });
        }
        fs::write(&dir, "memory.limit_in_bytes", &limit.to_string())?;
    }
    if !memsw_first {
        write_swap(&dir)?;
    }
    if let Some(reservation) = m.reservation().filter(|r| *r != 0) {
        fs::write(&dir, "memory.soft_limit_in_bytes", &reservation.to_string())?;
    }
    if let Some(swappiness) = m.swappiness() {
        if swappiness > 100 {
            return Err(Error::InvalidResource { field: "memory.swappiness", reason: format!("{swappiness} > 100") });
        }
        fs::write(&dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(&dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn apply_cpu(cpu_dir: Option<PathBuf>, cpuset_dir: Option<PathBuf>, c: &LinuxCpu) -> Result<()> {
    let wants_cpu = c.shares().is_some() || c.quota().is_some() || c.period().is_some();
    if let Some(dir) = cpu_dir {
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            fs::write(&dir, "cpu.shares", &shares.to_string())?;
        }
        // The period bounds the quota, so write it first.
        if let Some(period) = c.period().filter(|p| *p != 0) {
            fs::write(&dir, "cpu.cfs_period_us", &period.to_string())?;
        }
        if let Some(quota) = c.quota().filter(|q| *q != 0) {
            validate_quota(quota)?;
            fs::write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
        }
        if let Some(rt_period) = c.realtime_period().filter(|p| *p != 0) {
            fs::write(&dir, "cpu.rt_period_us", &rt_period.to_string())?;
        }
        if let Some(rt_runtime) = c.realtime_runtime().filter(|r| *r != 0) {
            fs::write(&dir, "cpu.rt_runtime_us", &rt_runtime.to_string())?;
        }
    } else if wants_cpu {
        return Err(Error::MissingController { controller: "cpu" });
    }
    let wants_cpuset = c.cpus().as_ref().is_some_and(|s| !s.is_empty()) || c.mems().as_ref().is_some_and(|s| !s.is_empty());
    match cpuset_dir {
        Some(dir) => {
            if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
                fs::write(&dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
                fs::write(&dir, "cpuset.mems", mems)?;
            }
        }
        None if wants_cpuset => return Err(Error::MissingController { controller: "cpuset" }),
        None => {}
    }
    Ok(())
}

pub(crate) fn validate_quota(quota: i64) -> Result<()> {
    if quota == -1 || quota >= 1000 {
        Ok(())
    } else {
        Err(Error::InvalidResource { field: "cpu.quota", reason: format!("{quota} must be -1 (unlimited) or at least 1000 µs") })
    }
}

fn apply_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for rule in rules {
        let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
        fs::write(dir, file, &device_rule(rule))?;
    }
    Ok(())
}

/// `c 1:3 rwm`, with `*` for a missing major/minor and `a` for all types.
pub(crate) fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let typ = rule.typ().map(|t| t.as_str().to_string()).unwrap_or_else(|| "a".into());
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "*".into());
    let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor()))
}

pub fn stats(h: &Hierarchy, path: &Path) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(d) = controller_dir(h, "cpuacct", path) {
        s.cpu.usage_ns = fs::read_u64(&d, "cpuacct.usage").unwrap_or(0);
        s.cpu.per_cpu_ns =
            fs::read_optional(&d, "cpuacct.usage_percpu").map(|t| t.split_whitespace().filter_map(|n| n.parse().ok()).collect()).unwrap_or_default();
        if let Some(text) = fs::read_optional(&d, "cpuacct.stat") {
            for (k, v) in fs::flat_keyed(&text) {
                match k {
                    "user" => s.cpu.user_ns = v * (1_000_000_000 / USER_HZ),
                    "system" => s.cpu.system_ns = v * (1_000_000_000 / USER_HZ),
                    _ => {}
                }
            }
        }
    }
    if let Some(d) = controller_dir(h, "cpu", path) {
        if let Some(text) = fs::read_optional(&d, "cpu.stat") {
            for (k, v) in fs::flat_keyed(&text) {
                match k {
                    "nr_periods" => s.cpu.periods = v,
                    "nr_throttled" => s.cpu.throttled_periods = v,
                    "throttled_time" => s.cpu.throttled_ns = v,
                    _ => {}
                }
            }
        }
    }
    if let Some(d) = controller_dir(h, "memory", path) {
        let m = &mut s.memory;
        m.usage = fs::read_u64(&d, "memory.usage_in_bytes").unwrap_or(0);
        m.max_usage = fs::read_u64(&d, "memory.max_usage_in_bytes").unwrap_or(0);
        m.limit = fs::read_u64(&d, "memory.limit_in_bytes").unwrap_or(u64::MAX);
        m.failcnt = fs::read_u64(&d, "memory.failcnt").unwrap_or(0);
        // memsw counts memory + swap; report swap alone.
        let memsw_usage = fs::read_u64(&d, "memory.memsw.usage_in_bytes").unwrap_or(m.usage);
        m.swap_usage = memsw_usage.saturating_sub(m.usage);
        m.swap_limit = fs::read_u64(&d, "memory.memsw.limit_in_bytes").unwrap_or(u64::MAX);
        if let Some(text) = fs::read_optional(&d, "memory.oom_control") {
            for (k, v) in fs::flat_keyed(&text) {
                if k == "oom_kill" {
                    m.oom_kills = v;
                }
            }
        }
        m.oom_events = m.failcnt;
        if let Some(text) = fs::read_optional(&d, "memory.stat") {
            m.stat = fs::flat_keyed(&text).map(|(k, v)| (k.to_string(), v)).collect();
        }
    }
    if let Some(d) = controller_dir(h, "pids", path) {
        s.pids.current = fs::read_u64(&d, "pids.current").unwrap_or(0);
        s.pids.limit = fs::read_u64(&d, "pids.max").unwrap_or(u64::MAX);
    }
    if let Some(d) = controller_dir(h, "hugetlb", path) {
        s.hugetlb = hugetlb_sizes(&d, ".limit_in_bytes")
            .into_iter()
            .map(|size| HugetlbStats {
                usage: fs::read_u64(&d, &format!("hugetlb.{size}.usage_in_bytes")).unwrap_or(0),
                max_usage: fs::read_u64(&d, &format!("hugetlb.{size}.max_usage_in_bytes")).unwrap_or(0),
                failcnt: fs::read_u64(&d, &format!("hugetlb.{size}.failcnt")).unwrap_or(0),
                page_size: size,
            })
            .collect();
    } else if let Some(d) = unified_dir(h, "hugetlb", path) {
        s.hugetlb = v2::hugetlb_stats(&d);
    }
    Ok(s)
}

/// Page sizes (`2MB`, `1GB`) for which `hugetlb.<size><suffix>` exists.
pub(crate) fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut sizes: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix("hugetlb.")?.strip_suffix(suffix).map(str::to_string))
        .filter(|size| !size.contains('.'))
        .collect();
    sizes.sort();
    sizes
}

pub fn kill_all(h: &Hierarchy, path: &Path, procs: impl Fn() -> Result<Vec<i32>>) -> Result<()> {
    let freezer = controller_dir(h, "freezer", path).filter(|d| d.is_dir());
    if let Some(d) = &freezer {
        freeze(d)?;
    }
    let result = procs().map(|pids| {
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    });
    if let Some(d) = &freezer {
        fs::write(d, "freezer.state", "THAWED")?;
    }
    result
}

fn freeze(dir: &Path) -> Result<()> {
    fs::write(dir, "freezer.state", "FROZEN")?;
    for _ in 0..100 {
        if fs::read(dir, "freezer.state")?.trim() == "FROZEN" {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(1));
    }
    log::warn!("cgroup {} did not freeze in time; killing anyway", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    use super::*;
    use crate::Cgroup;

    /// A v1 tree as the kernel presents it: the parent cpuset holds values.
    fn fake_v1() -> (tempfile::TempDir, Hierarchy) {
        let tmp = tempfile::tempdir().unwrap();
        let controllers = ["cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices", "hugetlb"];
        for c in controllers {
            std::fs::create_dir_all(tmp.path().join(c)).unwrap();
        }
        std::fs::write(tmp.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(tmp.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let h = Hierarchy::v1(tmp.path(), &controllers);
        (tmp, h)
    }

    fn read(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap()
    }

    #[test]
    fn create_makes_every_controller_dir_and_fills_cpuset() {
        let (tmp, h) = fake_v1();
        let cg = Cgroup::new(h, "/kubepods/pod1/ctr").unwrap();
        cg.create(None).unwrap();
        for c in ["cpu", "memory", "pids"] {
            assert!(tmp.path().join(c).join("kubepods/pod1/ctr").is_dir(), "{c}");
        }
        assert_eq!(read(tmp.path(), "cpuset/kubepods/cpuset.cpus"), "0-1");
        assert_eq!(read(tmp.path(), "cpuset/kubepods/pod1/ctr/cpuset.mems"), "0");
    }

    #[test]
    fn limits_land_in_the_v1_files() {
        let (tmp, h) = fake_v1();
        let cg = Cgroup::new(h, "ctr").unwrap();
        let resources = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64 << 20).swap(64 << 20).build().unwrap())
            .cpu(LinuxCpuBuilder::default().shares(512u64).quota(50_000i64).period(100_000u64).cpus("1").build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
            .devices(vec![
                LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap(),
                LinuxDeviceCgroupBuilder::default().allow(true).typ(LinuxDeviceType::C).major(1).minor(3).access("rwm").build().unwrap(),
            ])
            .build()
            .unwrap();
        std::fs::create_dir_all(tmp.path().join("memory/ctr")).unwrap();
        std::fs::write(tmp.path().join("memory/ctr/memory.memsw.limit_in_bytes"), "9223372036854771712").unwrap();
        cg.create(Some(&resources)).unwrap();
        assert_eq!(read(tmp.path(), "memory/ctr/memory.limit_in_bytes"), "67108864");
        assert_eq!(read(tmp.path(), "memory/ctr/memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(read(tmp.path(), "cpu/ctr/cpu.shares"), "512");
        assert_eq!(read(tmp.path(), "cpu/ctr/cpu.cfs_quota_us"), "50000");
        assert_eq!(read(tmp.path(), "cpu/ctr/cpu.cfs_period_us"), "100000");
        assert_eq!(read(tmp.path(), "cpuset/ctr/cpuset.cpus"), "1");
        assert_eq!(read(tmp.path(), "pids/ctr/pids.max"), "32");
        // The fake file keeps only the last write: the allow rule.
        assert_eq!(read(tmp.path(), "devices/ctr/devices.allow"), "c 1:3 rwm");
        assert_eq!(read(tmp.path(), "devices/ctr/devices.deny"), "a *:* rwm");
    }

    #[test]
    fn impossible_values_are_refused_before_any_write() {
        let (_tmp, h) = fake_v1();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        let quota = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().quota(5i64).build().unwrap()).build().unwrap();
        let err = cg.apply(&quota).unwrap_err();
        assert!(err.is_invalid_input() && err.to_string().contains("cpu.quota"), "{err}");
        let swap =
            LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(100i64 << 20).swap(10i64 << 20).build().unwrap()).build().unwrap();
        assert!(cg.apply(&swap).unwrap_err().to_string().contains("memory.swap"));
    }

    #[test]
    fn stats_read_back_and_convert_units() {
        let (tmp, h) = fake_v1();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        let w = |rel: &str, text: &str| std::fs::write(tmp.path().join(rel), text).unwrap();
        w("cpuacct/ctr/cpuacct.usage", "5000000\n");
        w("cpuacct/ctr/cpuacct.usage_percpu", "3000000 2000000 \n");
        w("cpuacct/ctr/cpuacct.stat", "user 3\nsystem 1\n");
        w("cpu/ctr/cpu.stat", "nr_periods 10\nnr_throttled 2\nthrottled_time 777\n");
        w("memory/ctr/memory.usage_in_bytes", "4096000\n");
        w("memory/ctr/memory.limit_in_bytes", "8192000\n");
        w("memory/ctr/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
        w("memory/ctr/memory.stat", "total_inactive_file 96000\ntotal_rss 1000\n");
        w("pids/ctr/pids.current", "3\n");
        w("pids/ctr/pids.max", "max\n");
        w("hugetlb/ctr/hugetlb.2MB.limit_in_bytes", "0\n");
        w("hugetlb/ctr/hugetlb.2MB.usage_in_bytes", "2097152\n");
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu.usage_ns, 5_000_000);
        assert_eq!(s.cpu.per_cpu_ns, vec![3_000_000, 2_000_000]);
        assert_eq!(s.cpu.user_ns, 30_000_000);
        assert_eq!(s.cpu.throttled_periods, 2);
        assert_eq!(s.memory.working_set(), 4_000_000);
        assert_eq!(s.memory.oom_kills, 1);
        assert_eq!(s.memory.rss(), 1000);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, u64::MAX);
        assert_eq!(s.hugetlb.len(), 1);
        assert_eq!(s.hugetlb[0].usage, 2097152);
    }

    #[test]
    fn delete_is_idempotent_and_keeps_parents() {
        let (tmp, h) = fake_v1();
        let cg = Cgroup::new(h, "parent/ctr").unwrap();
        cg.create(None).unwrap();
        // A fake cgroupfs dir holds the files tests wrote; real ones vanish on rmdir.
        for dir in cg.dirs() {
            for e in std::fs::read_dir(&dir).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
        cg.delete().unwrap();
        cg.delete().unwrap();
        assert!(!tmp.path().join("memory/parent/ctr").exists());
        assert!(tmp.path().join("memory/parent").exists());
    }

    #[test]
    fn paths_that_escape_are_rejected() {
        let (_tmp, h) = fake_v1();
        assert!(Cgroup::new(h.clone(), "../etc").is_err());
        assert!(Cgroup::new(h, "/").is_err());
    }

    /// A hybrid host's tree: v1 controllers without hugetlb, which the
    /// kernel left to the cgroup2 mount (as on this project's CI machines).
    fn fake_hybrid() -> (tempfile::TempDir, Hierarchy) {
        let tmp = tempfile::tempdir().unwrap();
        let controllers = ["cpu", "memory", "pids"];
        for c in controllers {
            std::fs::create_dir_all(tmp.path().join(c)).unwrap();
        }
        std::fs::create_dir_all(tmp.path().join("unified")).unwrap();
        std::fs::write(tmp.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        std::fs::write(tmp.path().join("unified/cgroup.subtree_control"), "").unwrap();
        let h = Hierarchy::hybrid(tmp.path(), &controllers);
        (tmp, h)
    }

    #[test]
    fn hybrid_cgroups_exist_in_the_unified_mount_under_the_same_path() {
        let (tmp, h) = fake_hybrid();
        let cg = Cgroup::new(h, "/kubepods/pod1/ctr").unwrap();
        cg.create(None).unwrap();
        for dir in ["cpu", "memory", "pids", "unified"] {
            assert!(tmp.path().join(dir).join("kubepods/pod1/ctr").is_dir(), "{dir}");
        }
        assert!(cg.dirs().contains(&tmp.path().join("unified/kubepods/pod1/ctr")), "joined and deleted there too");
        assert_eq!(read(tmp.path(), "unified/cgroup.subtree_control"), "+hugetlb", "delegated down the unified tree");
        cg.delete().unwrap();
        assert!(!tmp.path().join("unified/kubepods/pod1/ctr").exists());
    }

    #[test]
    fn hybrid_hugepage_limits_and_stats_use_the_unified_mount() {
        let (tmp, h) = fake_hybrid();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        let unified = tmp.path().join("unified/ctr");
        for file in ["hugetlb.2MB.max", "hugetlb.2MB.current"] {
            std::fs::write(unified.join(file), "0\n").unwrap();
        }
        std::fs::write(unified.join("hugetlb.2MB.events"), "max 2\n").unwrap();
        let limit = oci_spec::runtime::LinuxHugepageLimitBuilder::default().page_size("2MB").limit(4i64 << 20).build().unwrap();
        cg.apply(&LinuxResourcesBuilder::default().hugepage_limits(vec![limit]).build().unwrap()).unwrap();
        assert_eq!(read(&unified, "hugetlb.2MB.max"), (4u64 << 20).to_string());
        let stats = cg.stats().unwrap();
        assert_eq!(stats.hugetlb.len(), 1);
        assert_eq!((stats.hugetlb[0].page_size.as_str(), stats.hugetlb[0].failcnt), ("2MB", 2));
    }
}
