//! Pods, containers and shims, counted when Prometheus scrapes.

use std::sync::{Arc, OnceLock};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

/// What the runtime reports at each scrape.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateSnapshot {
    /// (state, count), e.g. (`ready`, 3), (`notready`, 1).
    pub pods: Vec<(&'static str, u64)>,
    /// (state, count), e.g. (`running`, 5), (`exited`, 2).
    pub containers: Vec<(&'static str, u64)>,
    /// Shims supervising a container or a pod's pause.
    pub shims: u64,
    /// Containers whose shim dropped output their log file refused (a
    /// full disk); containers that lost nothing are not listed.
    pub log_drops: Vec<ContainerLogDrops>,
}

/// Output one container's log lost, over the container's life.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContainerLogDrops {
    pub container_id: String,
    /// The container's and its pod's names, as the kubelet gave them.
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub lines: u64,
    pub bytes: u64,
    /// The log takes no output now.
    pub dropping: bool,
}

pub trait StateSource: Send + Sync + std::fmt::Debug {
    fn snapshot(&self) -> StateSnapshot;
}

#[derive(Debug)]
pub(crate) struct StateCollector(pub(crate) Arc<OnceLock<Arc<dyn StateSource>>>);

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Before the runtime is open there is nothing to count.
        let Some(source) = self.0.get() else { return Ok(()) };
        let snapshot = source.snapshot();
        for (name, help, counts) in [("pods", "Pod sandboxes, by state", &snapshot.pods), ("containers", "Containers, by state", &snapshot.containers)] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (state, count) in counts {
                let gauge = ConstGauge::new(*count as i64);
                gauge.encode(family.encode_family(&[("state", *state)])?)?;
            }
        }
        let shims = ConstGauge::new(snapshot.shims as i64);
        shims.encode(encoder.encode_descriptor("shims", "berth-shim processes supervising a container or a pod", None, shims.metric_type())?)?;
        // Per container, and only for those that lost output: a series
        // per container is what tells the operator which one.
        for (name, help, in_bytes) in [
            (
                "container_log_dropped_lines",
                "Log records (lines, or 16 KiB pieces of longer lines) a container's shim dropped because the log file refused them",
                false,
            ),
            ("container_log_dropped_bytes", "Bytes of output a container's shim dropped because the log file refused them", true),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for d in &snapshot.log_drops {
                let labels = [("container_id", d.container_id.as_str()), ("container", &d.container), ("pod", &d.pod), ("namespace", &d.namespace)];
                ConstCounter::new(if in_bytes { d.bytes } else { d.lines }).encode(family.encode_family(&labels)?)?;
            }
        }
        let dropping = ConstGauge::new(snapshot.log_drops.iter().filter(|d| d.dropping).count() as i64);
        dropping.encode(encoder.encode_descriptor(
            "container_logs_dropping",
            "Containers whose log file takes no output now (a full disk): their output is being dropped",
            None,
            dropping.metric_type(),
        )?)?;
        Ok(())
    }
}
