//! cgroup v2: one unified tree; controllers are enabled per subtree.

use std::{path::Path, thread, time::Duration};

use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use crate::{
    error::{Error, Result},
    fs,
    hierarchy::Hierarchy,
    stats::{HugetlbStats, Stats},
    v1::{hugetlb_sizes, validate_quota},
};

/// Controllers berth limits; enabled in every ancestor's subtree_control.
const CONTROLLERS: [&str; 6] = ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"];

pub fn create(h: &Hierarchy, path: &Path) -> Result<()> {
    create_at(h.root(), path)
}

/// Creates `path` under the cgroup2 mount `root` (the host's root on v2,
/// the `unified` mount on a hybrid host).
pub fn create_at(root: &Path, path: &Path) -> Result<()> {
    let leaf = root.join(path);
    fs::create_dir_all(&leaf)?;
    // Each ancestor must delegate the controllers to its children.
    let mut dir = root.to_path_buf();
    for component in path.components() {
        enable_controllers(&dir)?;
        dir.push(component);
    }
    Ok(())
}

fn enable_controllers(dir: &Path) -> Result<()> {
    let available = fs::read_optional(dir, "cgroup.controllers").unwrap_or_default();
    let enabled = fs::read_optional(dir, "cgroup.subtree_control").unwrap_or_default();
    let missing: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(dir, "cgroup.subtree_control", &missing.join(" "))
}

pub fn apply(h: &Hierarchy, path: &Path, r: &LinuxResources) -> Result<()> {
    let dir = h.root().join(path);
    if let Some(memory) = r.memory() {
        apply_memory(&dir, memory)?;
    }
    if let Some(cpu) = r.cpu() {
        apply_cpu(&dir, cpu)?;
    }
    if let Some(pids) = r.pids() {
        let value = if pids.limit() > 0 { pids.limit().to_string() } else { "max".into() };
        fs::write(&dir, "pids.max", &value)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        apply_hugetlb(&dir, limits)?;
    }
    if let Some(weight) = r.block_io().as_ref().and_then(|b| b.weight()) {
        if dir.join("io.bfq.weight").exists() {
            fs::write(&dir, "io.bfq.weight", &weight.to_string())?;
        } else if dir.join("io.weight").exists() {
            // blkio weight 10..1000 onto io.weight 1..10000.
            let w = 1 + (u64::from(weight).saturating_sub(10) * 9999) / 990;
            fs::write(&dir, "io.weight", &format!("default {w}"))?;
        }
    }
    // Raw keys the caller wants written as they are (OCI `unified`).
    if let Some(unified) = r.unified() {
        for (key, value) in unified {
            if key.contains('/') || key.starts_with('.') || !key.contains('.') {
                return Err(Error::InvalidResource { field: "unified", reason: format!("{key:?} is not a cgroup file name") });
            }
            fs::write(&dir, key, value)?;
        }
    }
    Ok(())
}

pub(crate) fn apply_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.max", l.page_size());
        if dir.join(&file).exists() {
            fs::write(dir, &file, &l.limit().to_string())?;
        } else {
            log::debug!("{file} missing; hugepage limit not enforced");
        }
    }
    Ok(())
}

fn apply_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|l| *l != 0);
    if let Some(limit) = limit {
        if limit < -1 {
            return Err(Error::InvalidResource { field: "memory.limit", reason: format!("{limit} is negative") });
        }
        fs::write(dir, "memory.max", &max_or(limit))?;
    }
    // OCI swap is memory+swap; v2 limits swap alone.
    if let Some(swap) = m.swap().filter(|s| *s != 0) {
        let value = match (swap, limit) {
            (-1, _) => "max".to_string(),
            (s, Some(l)) if l > 0 => {
                if s < l {
                    return Err(Error::InvalidResource { field: "memory.swap", reason: format!("memory+swap {s} is below the memory limit {l}") });
                }
                (s - l).to_string()
            }
            (s, _) => return Err(Error::InvalidResource { field: "memory.swap", reason: format!("memory+swap {s} given without a memory limit") }),
        };
        if dir.join("memory.swap.max").exists() {
            fs::write(dir, "memory.swap.max", &value)?;
        }
    }
    if let Some(reservation) = m.reservation().filter(|r| *r != 0) {
        fs::write(dir, "memory.low", &max_or(reservation))?;
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(Error::InvalidResource { field: "memory.disableOOMKiller", reason: "not supported by cgroup v2".into() });
    }
    Ok(())
}

fn apply_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        fs::write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
    }
    let quota = c.quota().filter(|q| *q != 0);
    let period = c.period().filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        if let Some(q) = quota {
            validate_quota(q)?;
        }
        // cpu.max takes both; keep the current value of the one not given.
        let current = fs::read_optional(dir, "cpu.max").unwrap_or_else(|| "max 100000".into());
        let mut it = current.split_whitespace();
        let (cur_quota, cur_period) = (it.next().unwrap_or("max").to_string(), it.next().unwrap_or("100000").to_string());
        let quota = quota.map(max_or).unwrap_or(cur_quota);
        let period = period.map(|p| p.to_string()).unwrap_or(cur_period);
        fs::write(dir, "cpu.max", &format!("{quota} {period}"))?;
    }
    if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
        fs::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
        fs::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// cgroup v1 cpu.shares (2..262144) onto v2 cpu.weight (1..10000), the
/// mapping runc and the kubelet agree on.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

pub fn stats(h: &Hierarchy, path: &Path) -> Result<Stats> {
    let d = h.root().join(path);
    let mut s = Stats::default();
    if let Some(text) = fs::read_optional(&d, "cpu.stat") {
        for (k, v) in fs::flat_keyed(&text) {
            match k {
                "usage_usec" => s.cpu.usage_ns = v * 1000,
                "user_usec" => s.cpu.user_ns = v * 1000,
                "system_usec" => s.cpu.system_ns = v * 1000,
                "nr_periods" => s.cpu.periods = v,
                "nr_throttled" => s.cpu.throttled_periods = v,
                "throttled_usec" => s.cpu.throttled_ns = v * 1000,
                _ => {}
            }
        }
    }
    let m = &mut s.memory;
    m.usage = fs::read_u64(&d, "memory.current").unwrap_or(0);
    m.max_usage = fs::read_u64(&d, "memory.peak").unwrap_or(0);
    m.limit = fs::read_u64(&d, "memory.max").unwrap_or(u64::MAX);
    m.swap_usage = fs::read_u64(&d, "memory.swap.current").unwrap_or(0);
    m.swap_limit = fs::read_u64(&d, "memory.swap.max").unwrap_or(u64::MAX);
    if let Some(text) = fs::read_optional(&d, "memory.events") {
        for (k, v) in fs::flat_keyed(&text) {
            match k {
                "oom" => m.oom_events = v,
                "oom_kill" => m.oom_kills = v,
                "max" => m.failcnt = v,
                _ => {}
            }
        }
    }
    if let Some(text) = fs::read_optional(&d, "memory.stat") {
        m.stat = fs::flat_keyed(&text).map(|(k, v)| (k.to_string(), v)).collect();
    }
    s.pids.current = fs::read_u64(&d, "pids.current").unwrap_or(0);
    s.pids.limit = fs::read_u64(&d, "pids.max").unwrap_or(u64::MAX);
    s.hugetlb = hugetlb_stats(&d);
    Ok(s)
}

pub(crate) fn hugetlb_stats(dir: &Path) -> Vec<HugetlbStats> {
    hugetlb_sizes(dir, ".max")
        .into_iter()
        .map(|size| HugetlbStats {
            usage: fs::read_u64(dir, &format!("hugetlb.{size}.current")).unwrap_or(0),
            max_usage: 0,
            failcnt: fs::read_optional(dir, &format!("hugetlb.{size}.events"))
                .and_then(|t| fs::flat_keyed(&t).find(|(k, _)| *k == "max").map(|(_, v)| v))
                .unwrap_or(0),
            page_size: size,
        })
        .collect()
}

pub fn kill_all(h: &Hierarchy, path: &Path, procs: impl Fn() -> Result<Vec<i32>>) -> Result<()> {
    let d = h.root().join(path);
    // Linux 5.14+: the kernel kills the whole subtree atomically.
    if d.join("cgroup.kill").exists() {
        return fs::write(&d, "cgroup.kill", "1");
    }
    let can_freeze = d.join("cgroup.freeze").exists();
    if can_freeze {
        fs::write(&d, "cgroup.freeze", "1")?;
        for _ in 0..100 {
            let frozen = fs::read_optional(&d, "cgroup.events").map(|t| fs::flat_keyed(&t).any(|(k, v)| k == "frozen" && v == 1)).unwrap_or(true);
            if frozen {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
    let result = procs().map(|pids| {
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    });
    if can_freeze {
        fs::write(&d, "cgroup.freeze", "0")?;
    }
    result
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    use super::*;
    use crate::{Cgroup, Version};

    fn fake_v2() -> (tempfile::TempDir, Hierarchy) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma\n").unwrap();
        std::fs::write(tmp.path().join("cgroup.subtree_control"), "").unwrap();
        let h = Hierarchy::v2(tmp.path());
        (tmp, h)
    }

    fn read(root: &Path, rel: &str) -> String {
        std::fs::read_to_string(root.join(rel)).unwrap()
    }

    #[test]
    fn create_delegates_controllers_down_the_tree() {
        let (tmp, h) = fake_v2();
        let cg = Cgroup::new(h, "kubepods/ctr").unwrap();
        assert_eq!(cg.version(), Version::V2);
        cg.create(None).unwrap();
        assert!(tmp.path().join("kubepods/ctr").is_dir());
        let root_ctl = read(tmp.path(), "cgroup.subtree_control");
        for c in ["+cpu", "+memory", "+pids", "+cpuset", "+io", "+hugetlb"] {
            assert!(root_ctl.contains(c), "{root_ctl}");
        }
        assert!(!root_ctl.contains("rdma"));
    }

    #[test]
    fn limits_land_in_the_v2_files() {
        let (tmp, h) = fake_v2();
        let cg = Cgroup::new(h, "ctr").unwrap();
        std::fs::create_dir_all(tmp.path().join("ctr")).unwrap();
        std::fs::write(tmp.path().join("ctr/memory.swap.max"), "max").unwrap();
        let resources = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).swap(96i64 << 20).reservation(32i64 << 20).build().unwrap())
            .cpu(LinuxCpuBuilder::default().shares(1024u64).quota(50_000i64).period(100_000u64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .unified([("memory.high".to_string(), "1000000".to_string())].into_iter().collect::<std::collections::HashMap<_, _>>())
            .build()
            .unwrap();
        cg.create(Some(&resources)).unwrap();
        assert_eq!(read(tmp.path(), "ctr/memory.max"), "67108864");
        assert_eq!(read(tmp.path(), "ctr/memory.swap.max"), (32u64 << 20).to_string());
        assert_eq!(read(tmp.path(), "ctr/memory.low"), "33554432");
        assert_eq!(read(tmp.path(), "ctr/cpu.weight"), "39");
        assert_eq!(read(tmp.path(), "ctr/cpu.max"), "50000 100000");
        assert_eq!(read(tmp.path(), "ctr/pids.max"), "max");
        assert_eq!(read(tmp.path(), "ctr/memory.high"), "1000000");
    }

    #[test]
    fn quota_update_keeps_the_existing_period() {
        let (tmp, h) = fake_v2();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        std::fs::write(tmp.path().join("ctr/cpu.max"), "max 250000\n").unwrap();
        let r = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().quota(125_000i64).build().unwrap()).build().unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(tmp.path(), "ctr/cpu.max"), "125000 250000");
    }

    #[test]
    fn unified_keys_cannot_escape_the_cgroup() {
        let (_tmp, h) = fake_v2();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        let r = LinuxResourcesBuilder::default()
            .unified([("../../etc/passwd".to_string(), "x".to_string())].into_iter().collect::<std::collections::HashMap<_, _>>())
            .build()
            .unwrap();
        assert!(cg.apply(&r).unwrap_err().is_invalid_input());
    }

    #[test]
    fn stats_read_back_in_nanoseconds() {
        let (tmp, h) = fake_v2();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        let w = |rel: &str, text: &str| std::fs::write(tmp.path().join(rel), text).unwrap();
        w("ctr/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n");
        w("ctr/memory.current", "8192\n");
        w("ctr/memory.max", "max\n");
        w("ctr/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w("ctr/memory.stat", "anon 4096\nfile 4096\ninactive_file 1024\n");
        w("ctr/pids.current", "2\n");
        w("ctr/pids.max", "10\n");
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu.usage_ns, 1_500_000);
        assert_eq!(s.cpu.throttled_ns, 20_000);
        assert_eq!(s.memory.limit, u64::MAX);
        assert_eq!(s.memory.oom_kills, 1);
        assert_eq!(s.memory.working_set(), 7168);
        assert_eq!(s.memory.rss(), 4096);
        assert_eq!(s.pids.limit, 10);
    }

    #[test]
    fn kill_uses_cgroup_kill_when_present() {
        let (tmp, h) = fake_v2();
        let cg = Cgroup::new(h, "ctr").unwrap();
        cg.create(None).unwrap();
        std::fs::write(tmp.path().join("ctr/cgroup.kill"), "").unwrap();
        cg.kill_all().unwrap();
        assert_eq!(read(tmp.path(), "ctr/cgroup.kill"), "1");
    }

    #[test]
    fn weight_mapping_matches_the_kubelet() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
