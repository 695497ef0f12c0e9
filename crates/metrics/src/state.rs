//! Pods, containers and shims, counted when Prometheus scrapes.

use std::sync::{Arc, OnceLock};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{gauge::ConstGauge, MetricType},
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
        Ok(())
    }
}
