//! berthd's metrics, in the Prometheus text format (`GET /metrics` on the
//! address of `[metrics]`), named after the Kubernetes conventions: a
//! `berth_` prefix, base units in the name (`_seconds`, `_bytes`), `_total`
//! on counters.
//!
//! Counters and histograms are recorded where things happen (the gRPC
//! layer, the pull path, exec); what is a state rather than an event (pods
//! and containers by state, shims, the process's memory and fds) is read
//! when Prometheus scrapes, so nothing is kept up to date in between.

mod process;
mod state;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

pub use state::{ContainerLogDrops, StateSnapshot, StateSource};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PullLabels {
    /// `success` or `failure`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// How an exec reached the container.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ExecKind {
    /// ExecSync: output returned in the answer.
    Sync,
    /// Exec through the streaming server.
    Stream,
}

impl ExecKind {
    fn label(self) -> &'static str {
        match self {
            ExecKind::Sync => "sync",
            ExecKind::Stream => "stream",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecLabels {
    kind: &'static str,
}

/// Every metric berthd exports; shared by the parts that record them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<MethodLabels, Histogram>,
    pulls: Family<PullLabels, Counter>,
    pull_bytes: Counter,
    pull_duration: Histogram,
    pull_failures: Family<CauseLabels, Counter>,
    exec_sessions: Family<ExecLabels, Counter>,
    exec_active: Family<ExecLabels, Gauge>,
    state: Arc<OnceLock<Arc<dyn StateSource>>>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut root = Registry::default();
        // The process's own metrics carry the standard names, unprefixed.
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("grpc_requests", "gRPC requests served on the CRI socket (CRI and berth's admin API), by method and gRPC code", requests.clone());
        // 1 ms to ~65 s: a List is a millisecond, a pull or a stop a minute.
        let request_duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential(0.001, 2.0, 17)));
        registry.register_with_unit(
            "grpc_request_duration",
            "Time to answer a gRPC request (to its response headers)",
            Unit::Seconds,
            request_duration.clone(),
        );
        let pulls = Family::<PullLabels, Counter>::default();
        registry.register("image_pulls", "Image pulls, by result", pulls.clone());
        let pull_bytes = Counter::default();
        registry.register_with_unit(
            "image_pull",
            "Bytes downloaded from registries by pulls (layers already stored are not downloaded)",
            Unit::Bytes,
            pull_bytes.clone(),
        );
        let pull_duration = Histogram::new(exponential(0.05, 2.0, 14));
        registry.register_with_unit("image_pull_duration", "Time a successful pull took, download and unpack", Unit::Seconds, pull_duration.clone());
        let pull_failures = Family::<CauseLabels, Counter>::default();
        registry.register("image_pull_failures", "Failed image pulls, by cause", pull_failures.clone());
        let exec_sessions = Family::<ExecLabels, Counter>::default();
        registry.register("exec_sessions", "Exec sessions started in containers, by kind", exec_sessions.clone());
        let exec_active = Family::<ExecLabels, Gauge>::default();
        registry.register("exec_sessions_active", "Exec sessions running now, by kind", exec_active.clone());
        let state = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(state::StateCollector(state.clone())));
        Arc::new(Metrics { registry: root, requests, request_duration, pulls, pull_bytes, pull_duration, pull_failures, exec_sessions, exec_active, state })
    }

    /// Where pods, containers and shims are counted at scrape time (the
    /// runtime, once it is open).
    pub fn set_state_source(&self, source: Arc<dyn StateSource>) {
        let _ = self.state.set(source);
    }

    /// One gRPC request, `path` as in its URI (`/runtime.v1.RuntimeService/Version`).
    pub fn record_request(&self, path: &str, code: &str, took: Duration) {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("unknown", path));
        let (service, method) = (service.to_string(), method.to_string());
        self.requests.get_or_create(&RequestLabels { service: service.clone(), method: method.clone(), code: code.to_string() }).inc();
        self.request_duration.get_or_create(&MethodLabels { service, method }).observe(took.as_secs_f64());
    }

    pub fn record_pull_success(&self, downloaded_bytes: u64, took: Duration) {
        self.pulls.get_or_create(&PullLabels { result: "success" }).inc();
        self.pull_bytes.inc_by(downloaded_bytes);
        self.pull_duration.observe(took.as_secs_f64());
    }

    /// `cause`: a short stable word (`not_found`, `unauthorized`, ...).
    pub fn record_pull_failure(&self, cause: &'static str) {
        self.pulls.get_or_create(&PullLabels { result: "failure" }).inc();
        self.pull_failures.get_or_create(&CauseLabels { cause }).inc();
    }

    /// Counts an exec session; it is active until the guard drops.
    pub fn exec_started(&self, kind: ExecKind) -> ExecGuard {
        let labels = ExecLabels { kind: kind.label() };
        self.exec_sessions.get_or_create(&labels).inc();
        let active = self.exec_active.get_or_create(&labels).clone();
        active.inc();
        ExecGuard(active)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// An exec session in progress (see [`Metrics::exec_started`]).
pub struct ExecGuard(Gauge);

impl Drop for ExecGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn exponential(start: f64, factor: f64, count: u16) -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(start, factor, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed;

    impl StateSource for Fixed {
        fn snapshot(&self) -> StateSnapshot {
            let drops = ContainerLogDrops {
                container_id: "abc".into(),
                container: "app".into(),
                pod: "web".into(),
                namespace: "default".into(),
                lines: 7,
                bytes: 700,
                dropping: true,
            };
            StateSnapshot { pods: vec![("ready", 2)], containers: vec![("running", 3), ("exited", 1)], shims: 5, log_drops: vec![drops] }
        }
    }

    #[test]
    fn every_metric_has_its_name_and_labels() {
        let m = Metrics::new();
        m.record_request("/runtime.v1.RuntimeService/Version", "OK", Duration::from_millis(2));
        m.record_request("/runtime.v1.RuntimeService/Version", "NotFound", Duration::from_millis(2));
        m.record_pull_success(1000, Duration::from_millis(300));
        m.record_pull_failure("not_found");
        let guard = m.exec_started(ExecKind::Stream);
        m.set_state_source(Arc::new(Fixed));
        let text = m.encode();
        for line in [
            r#"berth_grpc_requests_total{service="runtime.v1.RuntimeService",method="Version",code="OK"} 1"#,
            r#"berth_grpc_requests_total{service="runtime.v1.RuntimeService",method="Version",code="NotFound"} 1"#,
            r#"berth_grpc_request_duration_seconds_count{service="runtime.v1.RuntimeService",method="Version"} 2"#,
            r#"berth_image_pulls_total{result="success"} 1"#,
            r#"berth_image_pull_bytes_total 1000"#,
            r#"berth_image_pull_failures_total{cause="not_found"} 1"#,
            r#"berth_exec_sessions_total{kind="stream"} 1"#,
            r#"berth_exec_sessions_active{kind="stream"} 1"#,
            r#"berth_pods{state="ready"} 2"#,
            r#"berth_containers{state="exited"} 1"#,
            "berth_shims 5",
            r#"berth_container_log_dropped_lines_total{container_id="abc",container="app",pod="web",namespace="default"} 7"#,
            r#"berth_container_log_dropped_bytes_total{container_id="abc",container="app",pod="web",namespace="default"} 700"#,
            "berth_container_logs_dropping 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
        assert!(text.lines().any(|l| l.starts_with("process_resident_memory_bytes ")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("process_open_fds ")), "{text}");
        drop(guard);
        assert!(m.encode().lines().any(|l| l == r#"berth_exec_sessions_active{kind="stream"} 0"#));
    }
}
