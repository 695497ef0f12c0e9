//! Output a container's shim dropped because the log file refused it (a
//! full disk, a quota). The shim records it in `<bundle>/log-drops.json`
//! (berth-shim's contract, `berth_oci::log_drops`); berthd reads that file
//! where it reports: ContainerStatus (verbose), the Status condition
//! `ContainerLogsWritable`, and `/metrics`. Each change is logged once.

use berth_oci::log_drops::{LogDrops, FILE_NAME};
use k8s_cri::v1::RuntimeCondition;

use super::Runtime;
use crate::state::{Container, ContainerState};

/// The Status condition: false while some running container's log takes
/// no output. Not one the kubelet acts on; `crictl info` shows it.
pub(super) const CONDITION: &str = "ContainerLogsWritable";

/// Containers named in the condition's message; the rest are counted.
const NAMED: usize = 3;

impl Runtime {
    /// What the container's log lost so far; `None` if nothing (the shim
    /// writes the file at the first drop) or the bundle is gone.
    pub(crate) fn log_drops(&self, container: &Container) -> Option<LogDrops> {
        let bundle = self.paths.bundle(&container.id).ok()?;
        // A small file on /run, read inline like the cgroup files of stats.
        let drops = LogDrops::parse(&std::fs::read(bundle.join(FILE_NAME)).ok()?)?;
        let mut seen = container.log_drops_seen.lock().unwrap_or_else(|e| e.into_inner());
        if drops.episodes > seen.episodes && drops.dropping {
            tracing::warn!(
                container_id = %container.id,
                error = %drops.last_error,
                since = %drops.since,
                dropped_lines = drops.lines,
                dropped_bytes = drops.bytes,
                "container log takes no output; its shim drops the container's output until it does"
            );
        } else if drops.episodes > seen.episodes || (seen.dropping && !drops.dropping) {
            tracing::warn!(
                container_id = %container.id,
                error = %drops.last_error,
                dropped_lines = drops.lines,
                dropped_bytes = drops.bytes,
                "container log took no output for a while; the log marks the gap"
            );
        }
        *seen = drops.clone();
        Some(drops)
    }

    /// `ContainerLogsWritable`: true unless a running container's log
    /// drops output now.
    pub(super) fn log_condition(&self) -> RuntimeCondition {
        let mut dropping: Vec<(String, LogDrops)> = self
            .containers
            .list()
            .into_iter()
            .filter(|c| c.state() == ContainerState::Running)
            .filter_map(|c| self.log_drops(&c).filter(|d| d.dropping).map(|d| (c.id.clone(), d)))
            .collect();
        if dropping.is_empty() {
            return RuntimeCondition { r#type: CONDITION.into(), status: true, ..Default::default() };
        }
        dropping.sort_by(|a, b| a.0.cmp(&b.0));
        let named: Vec<String> = dropping
            .iter()
            .take(NAMED)
            .map(|(id, d)| format!("{} ({} since {}; {} lines dropped in all)", &id[..id.len().min(12)], d.last_error, d.since, d.lines))
            .collect();
        let more = dropping.len().saturating_sub(NAMED);
        let message = format!(
            "{} running container(s) drop output their log file refuses: {}{}",
            dropping.len(),
            named.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
        RuntimeCondition { r#type: CONDITION.into(), status: false, reason: "ContainerLogDropping".into(), message }
    }
}
