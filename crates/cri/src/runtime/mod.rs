//! RuntimeService: one file per RPC (or per family of stats RPCs); this
//! file holds the shared state and routes.

pub(crate) mod apparmor;
mod apparmor_default;
mod attach;
mod cgroup_paths;
mod container_stats;
mod container_status;
mod create_container;
mod dial_in_pod;
mod events;
mod exec;
mod exec_spec;
mod exec_sync;
mod exit_monitor;
mod features;
mod host_devices;
mod list_containers;
mod list_pod_sandbox;
mod log_drops;
mod metrics;
mod orphaned_execs;
mod pause;
pub(crate) mod pod_files;
mod pod_netns;
mod pod_network_stats;
mod pod_sandbox_status;
mod port_forward;
pub(crate) mod recover;
mod remove_container;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod state_counts;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod stream_attach;
mod stream_exec;
mod streaming_backend;
mod update_container_resources;
mod update_runtime_config;
mod user;
pub(crate) mod user_namespace;
mod version;

pub use create_container::check_container_config;
pub use run_pod_sandbox::{check_pod_request, CheckedPod};

use std::{
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
};

use berth_network::CniConfig;
use berth_store::NameIndex;
use k8s_cri::v1::{self, runtime_service_server::RuntimeService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::{
    error::{Error, Result},
    image::ImageServer,
    not_yet,
    seams::{PodHost, PodNetworks, Seams},
    shim_client::Shims,
    state::{Container, Registry, Sandbox},
};

/// What the daemon tells the CRI layer about itself.
#[derive(Debug, Clone, Default)]
pub struct RuntimeInfo {
    pub systemd_cgroup: bool,
    /// The effective configuration, shown by `crictl info` (verbose Status).
    pub verbose_config: String,
    pub shim_binary: PathBuf,
    pub cni: Option<CniConfig>,
    /// Runtime handler names accepted besides "" (the default).
    pub runtime_handlers: Vec<String>,
    /// Where container cgroups go when the pod names no cgroup parent.
    pub default_cgroup_parent: String,
    /// CDI spec directories, read at each CreateContainer that asks for a
    /// device; a later one wins.
    pub cdi_spec_dirs: Vec<PathBuf>,
}

/// The RuntimeService's state, shared with the exit monitors.
pub struct Runtime {
    pub(crate) info: RuntimeInfo,
    pub(crate) paths: berth_store::Paths,
    pub(crate) images: Arc<ImageServer>,
    pub(crate) sandboxes: Registry<Sandbox>,
    pub(crate) containers: Registry<Container>,
    pub(crate) pod_names: NameIndex,
    pub(crate) container_names: NameIndex,
    /// The seams to root (see [`crate::seams`]): CNI, shims, the node's
    /// namespaces and mounts, the containers' snapshots.
    pub(crate) cni: Arc<dyn PodNetworks>,
    pub(crate) shims: Arc<dyn Shims>,
    pub(crate) host: Arc<dyn PodHost>,
    pub(crate) snapshots: Arc<dyn berth_snapshot::Snapshotter>,
    /// Shared, not copied, into the channel's slots: the channel keeps
    /// all of its 1024 slots from the start, and a ContainerEventResponse
    /// held by value made them 472 KiB of every berthd, idle or not.
    pub(crate) events: tokio::sync::broadcast::Sender<Arc<v1::ContainerEventResponse>>,
    pub(crate) pod_cidr: Mutex<String>,
    /// This host's cgroup layout, read once: stats and exits need it often.
    pub(crate) hierarchy: berth_cgroups::Hierarchy,
    /// berthd's own bounding set: what privileged and `ALL` give a container.
    pub(crate) host_capabilities: Vec<String>,
    /// Where Exec, Attach and PortForward URLs point.
    pub(crate) streaming: Arc<berth_streaming::Streaming>,
    pub(crate) metrics: Arc<berth_metrics::Metrics>,
}

pub struct RuntimeServer {
    rt: Arc<Runtime>,
}

impl RuntimeServer {
    /// Answers a call that changes state, run to its end by
    /// [`to_completion`] on a handle of its own to the runtime.
    async fn changing<T, Work>(&self, rpc: &'static str, call: impl FnOnce(Arc<Runtime>) -> Work) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        Work: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        answer(rpc, false, to_completion(call(self.rt.clone())).await)
    }

    /// The server on a runtime the unit tests made.
    #[cfg(test)]
    pub(crate) fn for_runtime(rt: Arc<Runtime>) -> Self {
        Self { rt }
    }

    /// berth's admin Containers service (`berthctl cp`) on this runtime.
    pub fn admin_containers(&self) -> crate::AdminContainers {
        crate::AdminContainers::new(self.rt.clone())
    }

    /// Opens the runtime state under `paths`: reloads every pod and
    /// container record, reconnects to the shims that still run, and
    /// removes what a crash left half-made.
    /// The streaming server starts serving here, with this runtime behind
    /// its URLs.
    pub async fn open(info: RuntimeInfo, paths: berth_store::Paths, images: Arc<ImageServer>, streaming: Arc<berth_streaming::Streaming>) -> Result<Self> {
        let metrics = images.metrics.clone();
        let seams = Seams::real(&info, &paths, images.snapshots.clone())?;
        let rt = Runtime::new(info, paths, images, streaming.clone(), seams);
        recover::recover(&rt).await?;
        metrics.set_state_source(Arc::new(state_counts::StateCounts(Arc::downgrade(&rt))));
        streaming.serve(Arc::new(streaming_backend::StreamingBackend(rt.clone())));
        Ok(Self { rt })
    }
}

impl Runtime {
    /// A runtime on `seams`, before recovery (berthd's from
    /// [`RuntimeServer::open`], fakes in unit tests).
    pub(crate) fn new(
        info: RuntimeInfo,
        paths: berth_store::Paths,
        images: Arc<ImageServer>,
        streaming: Arc<berth_streaming::Streaming>,
        seams: Seams,
    ) -> Arc<Self> {
        let Seams { shims, network, host, snapshots, hierarchy } = seams;
        Arc::new(Runtime {
            metrics: images.metrics.clone(),
            shims,
            cni: network,
            host,
            snapshots,
            info,
            paths,
            images,
            sandboxes: Registry::new("pod sandbox"),
            containers: Registry::new("container"),
            pod_names: NameIndex::default(),
            container_names: NameIndex::default(),
            events: tokio::sync::broadcast::channel(1024).0,
            pod_cidr: Mutex::new(String::new()),
            hierarchy,
            host_capabilities: create_container::host_capabilities(),
            streaming,
        })
    }
}

impl Runtime {
    pub(crate) fn containers_of(&self, sandbox_id: &str) -> Vec<Arc<Container>> {
        self.containers.list().into_iter().filter(|c| c.sandbox_id == sandbox_id).collect()
    }

    pub(crate) async fn save_sandbox(&self, sandbox: &Sandbox) -> Result<()> {
        let record = sandbox.snapshot();
        let path = self.paths.sandbox_record(&record.id)?;
        crate::error::blocking(move || Ok(berth_store::save_record(&path, &record)?)).await
    }

    pub(crate) async fn save_container(&self, container: &Container) -> Result<()> {
        let record = container.snapshot();
        let path = self.paths.container_record(&record.id)?;
        crate::error::blocking(move || Ok(berth_store::save_record(&path, &record)?)).await
    }

    /// The cgroup of a container, in the hierarchy of this host.
    pub(crate) fn cgroup_of(&self, cgroups_path: &str) -> Result<berth_cgroups::Cgroup> {
        berth_cgroups::Cgroup::from_cgroups_path(self.hierarchy.clone(), cgroups_path).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// Turns errors into statuses and logs the outcome once
/// ([`crate::error::logged`]). Polling RPCs (`quiet`) log at trace level.
/// Runs a call that changes state to its end, whatever the client does:
/// tonic drops a handler's future when the client cancels or its deadline
/// passes, and a StartContainer dropped between the shim's start and the
/// task's creation left a running shim that nothing knew of (a CI run
/// found one). The kubelet retries a call that timed out; it finds the
/// work done (or under way, behind the object's lock).
async fn to_completion<T: Send + 'static>(work: impl std::future::Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    tokio::spawn(work).await.map_err(Error::internal("the call's task"))?
}

fn answer<T>(rpc: &'static str, quiet: bool, result: Result<T>) -> Result<Response<T>, Status> {
    crate::error::logged(rpc, quiet, result.map_err(Status::from)).map(Response::new)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    type GetContainerEventsStream = EventStream;

    async fn version(&self, req: Request<v1::VersionRequest>) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(version::version(req.into_inner())))
    }

    async fn status(&self, req: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        answer("Status", true, Ok(self.rt.status(req.into_inner())))
    }

    async fn runtime_config(&self, req: Request<v1::RuntimeConfigRequest>) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        Ok(Response::new(runtime_config::runtime_config(&self.rt.info, req.into_inner())))
    }

    async fn get_container_events(&self, _: Request<v1::GetEventsRequest>) -> Result<Response<EventStream>, Status> {
        Ok(Response::new(self.rt.subscribe_events()))
    }

    async fn run_pod_sandbox(&self, req: Request<v1::RunPodSandboxRequest>) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        self.changing("RunPodSandbox", |rt| async move { rt.run_pod_sandbox(req.into_inner()).await }).await
    }

    async fn stop_pod_sandbox(&self, req: Request<v1::StopPodSandboxRequest>) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        self.changing("StopPodSandbox", |rt| async move { rt.stop_pod_sandbox(req.into_inner()).await }).await
    }

    async fn remove_pod_sandbox(&self, req: Request<v1::RemovePodSandboxRequest>) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        self.changing("RemovePodSandbox", |rt| async move { rt.remove_pod_sandbox(req.into_inner()).await }).await
    }

    async fn pod_sandbox_status(&self, req: Request<v1::PodSandboxStatusRequest>) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        answer("PodSandboxStatus", true, self.rt.pod_sandbox_status(req.into_inner()))
    }

    async fn list_pod_sandbox(&self, req: Request<v1::ListPodSandboxRequest>) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        answer("ListPodSandbox", true, Ok(self.rt.list_pod_sandbox(req.into_inner())))
    }

    async fn create_container(&self, req: Request<v1::CreateContainerRequest>) -> Result<Response<v1::CreateContainerResponse>, Status> {
        self.changing("CreateContainer", |rt| async move { rt.create_container(req.into_inner()).await }).await
    }

    async fn start_container(&self, req: Request<v1::StartContainerRequest>) -> Result<Response<v1::StartContainerResponse>, Status> {
        self.changing("StartContainer", |rt| async move { rt.start_container(req.into_inner()).await }).await
    }

    async fn stop_container(&self, req: Request<v1::StopContainerRequest>) -> Result<Response<v1::StopContainerResponse>, Status> {
        self.changing("StopContainer", |rt| async move { rt.stop_container(req.into_inner()).await }).await
    }

    async fn remove_container(&self, req: Request<v1::RemoveContainerRequest>) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        self.changing("RemoveContainer", |rt| async move { rt.remove_container(req.into_inner()).await }).await
    }

    async fn list_containers(&self, req: Request<v1::ListContainersRequest>) -> Result<Response<v1::ListContainersResponse>, Status> {
        answer("ListContainers", true, Ok(self.rt.list_containers(req.into_inner())))
    }

    async fn container_status(&self, req: Request<v1::ContainerStatusRequest>) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        answer("ContainerStatus", true, self.rt.container_status(req.into_inner()))
    }

    async fn update_container_resources(
        &self,
        req: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        answer("UpdateContainerResources", false, self.rt.update_container_resources(req.into_inner()).await)
    }

    async fn reopen_container_log(&self, req: Request<v1::ReopenContainerLogRequest>) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        answer("ReopenContainerLog", false, self.rt.reopen_container_log(req.into_inner()).await)
    }

    async fn exec_sync(&self, req: Request<v1::ExecSyncRequest>) -> Result<Response<v1::ExecSyncResponse>, Status> {
        answer("ExecSync", false, self.rt.exec_sync(req.into_inner()).await)
    }

    async fn exec(&self, req: Request<v1::ExecRequest>) -> Result<Response<v1::ExecResponse>, Status> {
        answer("Exec", false, self.rt.exec(req.into_inner()).await)
    }

    async fn attach(&self, req: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        answer("Attach", false, self.rt.attach(req.into_inner()).await)
    }

    async fn port_forward(&self, req: Request<v1::PortForwardRequest>) -> Result<Response<v1::PortForwardResponse>, Status> {
        answer("PortForward", false, self.rt.port_forward(req.into_inner()).await)
    }

    async fn container_stats(&self, req: Request<v1::ContainerStatsRequest>) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        answer("ContainerStats", true, self.rt.container_stats(req.into_inner()).await)
    }

    async fn list_container_stats(&self, req: Request<v1::ListContainerStatsRequest>) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        answer("ListContainerStats", true, self.rt.list_container_stats(req.into_inner()).await)
    }

    async fn pod_sandbox_stats(&self, req: Request<v1::PodSandboxStatsRequest>) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        answer("PodSandboxStats", true, self.rt.pod_sandbox_stats(req.into_inner()).await)
    }

    async fn list_pod_sandbox_stats(&self, req: Request<v1::ListPodSandboxStatsRequest>) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        answer("ListPodSandboxStats", true, self.rt.list_pod_sandbox_stats(req.into_inner()).await)
    }

    async fn update_runtime_config(&self, req: Request<v1::UpdateRuntimeConfigRequest>) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        answer("UpdateRuntimeConfig", false, Ok(self.rt.update_runtime_config(req.into_inner())))
    }

    async fn checkpoint_container(&self, _: Request<v1::CheckpointContainerRequest>) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        Err(not_yet("CheckpointContainer"))
    }

    async fn list_metric_descriptors(&self, req: Request<v1::ListMetricDescriptorsRequest>) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        answer("ListMetricDescriptors", true, Ok(metrics::list_metric_descriptors(req.into_inner())))
    }

    async fn list_pod_sandbox_metrics(&self, req: Request<v1::ListPodSandboxMetricsRequest>) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        answer("ListPodSandboxMetrics", true, self.rt.list_pod_sandbox_metrics(req.into_inner()).await)
    }
}
