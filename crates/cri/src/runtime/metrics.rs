//! ListMetricDescriptors / ListPodSandboxMetrics: the cAdvisor-named
//! metrics the kubelet serves at /metrics/cadvisor when it takes stats
//! from the runtime.

use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::Result,
    state::{now_nanos, ContainerState},
};

const METRICS: [(&str, &str, v1::MetricType); 3] = [
    ("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", v1::MetricType::Counter),
    ("container_memory_working_set_bytes", "Current working set in bytes.", v1::MetricType::Gauge),
    ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", v1::MetricType::Gauge),
];

pub(super) fn list_metric_descriptors(_req: v1::ListMetricDescriptorsRequest) -> v1::ListMetricDescriptorsResponse {
    let descriptors = METRICS
        .iter()
        .map(|(name, help, _)| v1::MetricDescriptor {
            name: name.to_string(),
            help: help.to_string(),
            label_keys: vec!["container".into(), "namespace".into(), "pod".into()],
        })
        .collect();
    v1::ListMetricDescriptorsResponse { descriptors }
}

impl Runtime {
    pub(crate) async fn list_pod_sandbox_metrics(&self, _req: v1::ListPodSandboxMetricsRequest) -> Result<v1::ListPodSandboxMetricsResponse> {
        let mut pod_metrics = Vec::new();
        for sandbox in self.sandboxes.list().into_iter().filter(|s| s.is_ready()) {
            let pod = sandbox.snapshot().metadata();
            let mut container_metrics = Vec::new();
            for c in self.containers_of(&sandbox.id).into_iter().filter(|c| c.state() == ContainerState::Running) {
                let r = c.snapshot();
                let Ok(stats) = self.cgroup_of(&r.cgroups_path).and_then(|cg| cg.stats().map_err(|e| crate::error::Error::Internal(e.to_string()))) else {
                    continue;
                };
                let name = r.config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
                let labels = vec![name, pod.namespace.clone(), pod.name.clone()];
                let values = [stats.cpu.usage_ns / 1_000_000_000, stats.memory.working_set(), stats.memory.usage];
                let metrics = METRICS
                    .iter()
                    .zip(values)
                    .map(|((name, _, kind), v)| v1::Metric {
                        name: name.to_string(),
                        timestamp: now_nanos(),
                        metric_type: *kind as i32,
                        label_values: labels.clone(),
                        value: Some(v1::UInt64Value { value: v }),
                    })
                    .collect();
                container_metrics.push(v1::ContainerMetrics { container_id: r.id, metrics });
            }
            pod_metrics.push(v1::PodSandboxMetrics { pod_sandbox_id: sandbox.id.clone(), metrics: Vec::new(), container_metrics });
        }
        Ok(v1::ListPodSandboxMetricsResponse { pod_metrics })
    }
}
