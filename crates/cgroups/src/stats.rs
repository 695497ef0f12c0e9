//! Resource usage read back from the cgroup, in one shape for v1 and v2.

use std::collections::BTreeMap;

/// Usage of one cgroup. Version-specific files are normalised (v1 ticks and
/// v2 microseconds both become nanoseconds) so callers need not care.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub hugetlb: Vec<HugetlbStats>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuStats {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    pub per_cpu_ns: Vec<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStats {
    /// Bytes charged to the cgroup (v1 usage_in_bytes, v2 memory.current).
    pub usage: u64,
    pub max_usage: u64,
    /// `u64::MAX` when unlimited.
    pub limit: u64,
    pub swap_usage: u64,
    pub swap_limit: u64,
    pub failcnt: u64,
    /// Times the kernel OOM killer killed a process in this cgroup.
    pub oom_kills: u64,
    /// Times the cgroup hit its limit and entered OOM handling.
    pub oom_events: u64,
    /// The raw memory.stat keys (v1: cache, rss, total_inactive_file...;
    /// v2: anon, file, inactive_file...).
    pub stat: BTreeMap<String, u64>,
}

impl MemoryStats {
    /// What the kubelet calls the working set: usage minus inactive file
    /// pages, the memory the kernel cannot simply drop.
    pub fn working_set(&self) -> u64 {
        let inactive = self.stat.get("total_inactive_file").or_else(|| self.stat.get("inactive_file")).copied().unwrap_or(0);
        self.usage.saturating_sub(inactive)
    }

    /// Anonymous + swap-backed memory (v1 `rss`, v2 `anon`).
    pub fn rss(&self) -> u64 {
        self.stat.get("total_rss").or_else(|| self.stat.get("anon")).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PidsStats {
    pub current: u64,
    /// `u64::MAX` when unlimited.
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HugetlbStats {
    pub page_size: String,
    pub usage: u64,
    pub max_usage: u64,
    pub failcnt: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_set_subtracts_inactive_file() {
        let mut m = MemoryStats { usage: 1000, ..Default::default() };
        m.stat.insert("inactive_file".into(), 300);
        assert_eq!(m.working_set(), 700);
        m.stat.insert("inactive_file".into(), 5000);
        assert_eq!(m.working_set(), 0);
    }
}
