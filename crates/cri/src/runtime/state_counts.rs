//! Pods, containers and shims counted for `/metrics`, at scrape time.

use std::sync::Weak;

use berth_metrics::{ContainerLogDrops, StateSnapshot, StateSource};

use super::Runtime;
use crate::state::{ContainerState, SandboxState};

/// Holds the runtime weakly: the metrics outlive nothing they count.
pub(crate) struct StateCounts(pub(crate) Weak<Runtime>);

impl std::fmt::Debug for StateCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCounts")
    }
}

impl StateSource for StateCounts {
    fn snapshot(&self) -> StateSnapshot {
        let Some(rt) = self.0.upgrade() else { return StateSnapshot::default() };
        let sandboxes = rt.sandboxes.list();
        let containers = rt.containers.list();
        let mut pods = vec![("ready", 0), ("notready", 0)];
        let mut pause_shims = 0;
        for s in &sandboxes {
            let record = s.record();
            let slot = match record.state {
                SandboxState::Ready => 0,
                SandboxState::NotReady => 1,
            };
            pods[slot].1 += 1;
            pause_shims += u64::from(record.pause_pid.is_some());
        }
        let mut by_state = vec![("created", 0), ("running", 0), ("exited", 0), ("unknown", 0)];
        let mut container_shims = 0;
        let mut log_drops = Vec::new();
        for c in &containers {
            if let Some(d) = rt.log_drops(c) {
                let record = c.snapshot();
                let pod = rt.sandboxes.get(&c.sandbox_id).map(|s| s.record().metadata()).unwrap_or_default();
                log_drops.push(ContainerLogDrops {
                    container_id: c.id.clone(),
                    container: record.config.metadata.map(|m| m.name).unwrap_or_default(),
                    pod: pod.name,
                    namespace: pod.namespace,
                    lines: d.lines,
                    bytes: d.bytes,
                    dropping: d.dropping,
                });
            }
            let slot = match c.record().state {
                ContainerState::Created => 0,
                ContainerState::Running => 1,
                ContainerState::Exited => 2,
                ContainerState::Unknown => 3,
            };
            by_state[slot].1 += 1;
            container_shims += u64::from(c.shim().is_some());
        }
        StateSnapshot { pods, containers: by_state, shims: pause_shims + container_shims, log_drops }
    }
}
