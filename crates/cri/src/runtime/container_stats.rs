//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats, read from the containers' cgroups (v1 or v2, via
//! berth-cgroups) and their thin layers.

use std::{path::Path, sync::Arc};

use k8s_cri::v1;

use super::{list_pod_sandbox::labels_match, Runtime};
use crate::{
    error::{blocking, Result},
    state::{now_nanos, Container, ContainerState, Sandbox},
};

fn value(v: u64) -> Option<v1::UInt64Value> {
    Some(v1::UInt64Value { value: v })
}

/// One container's figures, before they become CRI messages.
#[derive(Default, Clone, Copy)]
struct Usage {
    cpu_ns: u64,
    nano_cores: u64,
    memory: u64,
    working_set: u64,
    rss: u64,
    available: u64,
    faults: u64,
    major_faults: u64,
    processes: u64,
}

impl Runtime {
    pub(crate) async fn container_stats(&self, req: v1::ContainerStatsRequest) -> Result<v1::ContainerStatsResponse> {
        let container = self.containers.get(&req.container_id)?;
        Ok(v1::ContainerStatsResponse { stats: Some(self.stats_of(&container).await?.0) })
    }

    pub(crate) async fn list_container_stats(&self, req: v1::ListContainerStatsRequest) -> Result<v1::ListContainerStatsResponse> {
        let filter = req.filter.unwrap_or_default();
        let mut stats = Vec::new();
        for c in self.containers.list() {
            let r = c.snapshot();
            let wanted = (filter.id.is_empty() || r.id.starts_with(&filter.id))
                && (filter.pod_sandbox_id.is_empty() || r.sandbox_id.starts_with(&filter.pod_sandbox_id))
                && labels_match(&filter.label_selector, &r.config.labels)
                && r.state == ContainerState::Running;
            if wanted {
                stats.push(self.stats_of(&c).await?.0);
            }
        }
        Ok(v1::ListContainerStatsResponse { stats })
    }

    pub(crate) async fn pod_sandbox_stats(&self, req: v1::PodSandboxStatsRequest) -> Result<v1::PodSandboxStatsResponse> {
        let sandbox = self.sandboxes.get(&req.pod_sandbox_id)?;
        Ok(v1::PodSandboxStatsResponse { stats: Some(self.pod_stats(&sandbox).await?) })
    }

    pub(crate) async fn list_pod_sandbox_stats(&self, req: v1::ListPodSandboxStatsRequest) -> Result<v1::ListPodSandboxStatsResponse> {
        let filter = req.filter.unwrap_or_default();
        let mut stats = Vec::new();
        for s in self.sandboxes.list() {
            let r = s.snapshot();
            if (filter.id.is_empty() || r.id.starts_with(&filter.id)) && labels_match(&filter.label_selector, &r.config.labels) && s.is_ready() {
                stats.push(self.pod_stats(&s).await?);
            }
        }
        Ok(v1::ListPodSandboxStatsResponse { stats })
    }

    /// A pod's figures are the sum of its running containers'.
    async fn pod_stats(&self, sandbox: &Arc<Sandbox>) -> Result<v1::PodSandboxStats> {
        let r = sandbox.snapshot();
        let mut containers = Vec::new();
        let mut total = Usage::default();
        for c in self.containers_of(&r.id).into_iter().filter(|c| c.state() == ContainerState::Running) {
            let (stats, usage) = self.stats_of(&c).await?;
            total.cpu_ns += usage.cpu_ns;
            total.nano_cores += usage.nano_cores;
            total.memory += usage.memory;
            total.working_set += usage.working_set;
            total.rss += usage.rss;
            total.faults += usage.faults;
            total.major_faults += usage.major_faults;
            total.processes += usage.processes;
            containers.push(stats);
        }
        let now = now_nanos();
        let (cpu, memory) = cpu_memory(&total, now);
        let network = self.pod_network_stats(&r).await;
        Ok(v1::PodSandboxStats {
            attributes: Some(v1::PodSandboxAttributes {
                id: r.id.clone(),
                metadata: Some(r.metadata()),
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
            }),
            linux: Some(v1::LinuxPodSandboxStats {
                cpu: Some(cpu),
                memory: Some(memory),
                network,
                process: Some(v1::ProcessUsage { timestamp: now, process_count: value(total.processes) }),
                containers,
            }),
            windows: None,
        })
    }

    async fn stats_of(&self, container: &Container) -> Result<(v1::ContainerStats, Usage)> {
        let r = container.snapshot();
        let now = now_nanos();
        let mut usage = Usage::default();
        if r.state == ContainerState::Running {
            let cgroup = self.cgroup_of(&r.cgroups_path)?;
            if let Ok(s) = blocking(move || cgroup.stats().map_err(|e| crate::error::Error::Internal(e.to_string()))).await {
                usage.cpu_ns = s.cpu.usage_ns;
                usage.memory = s.memory.usage;
                usage.working_set = s.memory.working_set();
                usage.rss = s.memory.rss();
                usage.available = available_bytes(s.memory.limit, usage.working_set);
                usage.faults = s.memory.stat.get("pgfault").or_else(|| s.memory.stat.get("total_pgfault")).copied().unwrap_or(0);
                usage.major_faults = s.memory.stat.get("pgmajfault").or_else(|| s.memory.stat.get("total_pgmajfault")).copied().unwrap_or(0);
                usage.processes = s.pids.current;
            }
            usage.nano_cores = self.nano_cores(container, now, usage.cpu_ns);
        }
        let layer = self.writable_layer(&r.id).await;
        let (cpu, memory) = cpu_memory(&usage, now);
        let stats = v1::ContainerStats {
            attributes: Some(v1::ContainerAttributes {
                id: r.id.clone(),
                metadata: r.config.metadata.clone(),
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
            }),
            cpu: Some(cpu),
            memory: Some(memory),
            writable_layer: Some(v1::FilesystemUsage {
                timestamp: now,
                fs_id: Some(v1::FilesystemIdentifier { mountpoint: self.paths.snapshots().display().to_string() }),
                used_bytes: value(layer.0),
                inodes_used: value(layer.1),
            }),
            swap: None,
        };
        Ok((stats, usage))
    }

    /// CPU cores used since the previous sample of this container.
    fn nano_cores(&self, container: &Container, now: i64, usage_ns: u64) -> u64 {
        let mut last = container.cpu_sample.lock().unwrap_or_else(|e| e.into_inner());
        let rate = match *last {
            Some((t, u)) if now > t && usage_ns >= u => ((usage_ns - u) as u128 * 1_000_000_000 / (now - t) as u128) as u64,
            _ => 0,
        };
        *last = Some((now, usage_ns));
        rate
    }

    /// Bytes and inodes in the container's thin layer.
    async fn writable_layer(&self, id: &str) -> (u64, u64) {
        let (snapshots, key) = (self.snapshots.clone(), id.to_string());
        blocking(move || {
            let info = snapshots.stat(&key)?;
            Ok(disk_usage(&snapshots.fs_dir(&info)))
        })
        .await
        .unwrap_or((0, 0))
    }
}

/// Above this a memory limit is no limit: v2's `max` reads as `u64::MAX`,
/// v1's unlimited `memory.limit_in_bytes` as 2^63 rounded down to a page.
/// The kubelet and containerd draw the line at 2^62 too.
const UNLIMITED_MEMORY: u64 = 1 << 62;

/// What the container may still use before its limit; 0 without a limit,
/// as containerd and cAdvisor report it (not 16 EiB).
fn available_bytes(limit: u64, working_set: u64) -> u64 {
    if limit > UNLIMITED_MEMORY {
        0
    } else {
        limit.saturating_sub(working_set)
    }
}

fn cpu_memory(u: &Usage, now: i64) -> (v1::CpuUsage, v1::MemoryUsage) {
    let cpu = v1::CpuUsage { timestamp: now, usage_core_nano_seconds: value(u.cpu_ns), usage_nano_cores: value(u.nano_cores) };
    let memory = v1::MemoryUsage {
        timestamp: now,
        working_set_bytes: value(u.working_set),
        available_bytes: value(u.available),
        usage_bytes: value(u.memory),
        rss_bytes: value(u.rss),
        page_faults: value(u.faults),
        major_page_faults: value(u.major_faults),
    };
    (cpu, memory)
}

fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            inodes += 1;
            bytes += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::available_bytes;

    #[test]
    fn no_limit_leaves_nothing_available_to_report() {
        assert_eq!(available_bytes(u64::MAX, 8 << 20), 0, "v2 memory.max = max");
        assert_eq!(available_bytes(9_223_372_036_854_771_712, 8 << 20), 0, "v1 unlimited memory.limit_in_bytes");
        assert_eq!(available_bytes(64 << 20, 8 << 20), 56 << 20);
        assert_eq!(available_bytes(4 << 20, 8 << 20), 0, "over the limit (a lowered limit) is not negative");
    }
}
