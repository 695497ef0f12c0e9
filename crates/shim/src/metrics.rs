//! cgroup statistics as containerd's Metrics messages, so any client of the
//! Task API (berthd, ctr, containerd) can decode them.

use berth_cgroups::{Stats, Version};
use containerd_shim_protos::{cgroups::metrics as v1, cgroups_v2::metrics as v2, protobuf::Message};
use protobuf::well_known_types::any::Any;

use crate::error::{Result, ShimError};

pub const V1_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

pub fn to_any(version: Version, s: &Stats) -> Result<Any> {
    let (type_url, value) = match version {
        Version::V1 => (V1_TYPE_URL, v1_metrics(s).write_to_bytes()),
        Version::V2 => (V2_TYPE_URL, v2_metrics(s).write_to_bytes()),
    };
    let value = value.map_err(|e| ShimError::Internal(format!("encode metrics: {e}")))?;
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = value;
    Ok(any)
}

fn stat(s: &Stats, key: &str) -> u64 {
    s.memory.stat.get(key).copied().unwrap_or(0)
}

fn v1_metrics(s: &Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut cpu = v1::CPUStat::new();
    let mut usage = v1::CPUUsage::new();
    usage.total = s.cpu.usage_ns;
    usage.user = s.cpu.user_ns;
    usage.kernel = s.cpu.system_ns;
    usage.per_cpu = s.cpu.per_cpu_ns.clone();
    cpu.usage = Some(usage).into();
    let mut throttle = v1::Throttle::new();
    throttle.periods = s.cpu.periods;
    throttle.throttled_periods = s.cpu.throttled_periods;
    throttle.throttled_time = s.cpu.throttled_ns;
    cpu.throttling = Some(throttle).into();
    m.cpu = Some(cpu).into();

    let mut mem = v1::MemoryStat::new();
    mem.cache = stat(s, "cache");
    mem.rss = stat(s, "rss");
    mem.mapped_file = stat(s, "mapped_file");
    mem.pg_fault = stat(s, "pgfault");
    mem.pg_maj_fault = stat(s, "pgmajfault");
    mem.inactive_file = stat(s, "inactive_file");
    mem.active_file = stat(s, "active_file");
    mem.total_cache = stat(s, "total_cache");
    mem.total_rss = stat(s, "total_rss");
    mem.total_inactive_file = stat(s, "total_inactive_file");
    mem.total_active_file = stat(s, "total_active_file");
    mem.total_pg_fault = stat(s, "total_pgfault");
    mem.total_pg_maj_fault = stat(s, "total_pgmajfault");
    let mut usage = v1::MemoryEntry::new();
    usage.usage = s.memory.usage;
    usage.limit = s.memory.limit;
    usage.max = s.memory.max_usage;
    usage.failcnt = s.memory.failcnt;
    mem.usage = Some(usage).into();
    let mut swap = v1::MemoryEntry::new();
    swap.usage = s.memory.swap_usage + s.memory.usage;
    swap.limit = s.memory.swap_limit;
    mem.swap = Some(swap).into();
    m.memory = Some(mem).into();
    let mut oom = v1::MemoryOomControl::new();
    oom.oom_kill = s.memory.oom_kills;
    m.memory_oom_control = Some(oom).into();

    let mut pids = v1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();
    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|h| {
            let mut x = v1::HugetlbStat::new();
            x.pagesize = h.page_size.clone();
            x.usage = h.usage;
            x.max = h.max_usage;
            x.failcnt = h.failcnt;
            x
        })
        .collect();
    m
}

fn v2_metrics(s: &Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut cpu = v2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage_ns / 1000;
    cpu.user_usec = s.cpu.user_ns / 1000;
    cpu.system_usec = s.cpu.system_ns / 1000;
    cpu.nr_periods = s.cpu.periods;
    cpu.nr_throttled = s.cpu.throttled_periods;
    cpu.throttled_usec = s.cpu.throttled_ns / 1000;
    m.cpu = Some(cpu).into();
    let mut mem = v2::MemoryStat::new();
    mem.anon = stat(s, "anon");
    mem.file = stat(s, "file");
    mem.inactive_file = stat(s, "inactive_file");
    mem.active_file = stat(s, "active_file");
    mem.pgfault = stat(s, "pgfault");
    mem.pgmajfault = stat(s, "pgmajfault");
    mem.usage = s.memory.usage;
    mem.usage_limit = s.memory.limit;
    mem.max_usage = s.memory.max_usage;
    mem.swap_usage = s.memory.swap_usage;
    mem.swap_limit = s.memory.swap_limit;
    m.memory = Some(mem).into();
    let mut events = v2::MemoryEvents::new();
    events.oom = s.memory.oom_events;
    events.oom_kill = s.memory.oom_kills;
    events.max = s.memory.failcnt;
    m.memory_events = Some(events).into();
    let mut pids = v2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = Some(pids).into();
    m
}
