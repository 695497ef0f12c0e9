//! RuntimeService: one file per implemented RPC; this file routes.

mod runtime_config;
mod status;
mod version;

use std::pin::Pin;

use k8s_cri::v1::{self, runtime_service_server::RuntimeService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::not_yet;

/// What the daemon tells the CRI layer about itself.
#[derive(Debug, Clone, Default)]
pub struct RuntimeInfo {
    pub systemd_cgroup: bool,
    /// The effective configuration, shown by `crictl info` (verbose Status).
    pub verbose_config: String,
}

pub struct RuntimeServer {
    info: RuntimeInfo,
}

impl RuntimeServer {
    pub fn new(info: RuntimeInfo) -> Self {
        Self { info }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RuntimeService for RuntimeServer {
    type GetContainerEventsStream = EventStream;

    async fn version(&self, req: Request<v1::VersionRequest>) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(version::version(req.into_inner())))
    }

    async fn status(&self, req: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(status::status(&self.info, req.into_inner())))
    }

    async fn runtime_config(&self, req: Request<v1::RuntimeConfigRequest>) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        Ok(Response::new(runtime_config::runtime_config(&self.info, req.into_inner())))
    }

    async fn get_container_events(&self, _: Request<v1::GetEventsRequest>) -> Result<Response<EventStream>, Status> {
        Err(not_yet("GetContainerEvents"))
    }

    async fn run_pod_sandbox(&self, _: Request<v1::RunPodSandboxRequest>) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        Err(not_yet("RunPodSandbox"))
    }

    async fn stop_pod_sandbox(&self, _: Request<v1::StopPodSandboxRequest>) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        Err(not_yet("StopPodSandbox"))
    }

    async fn remove_pod_sandbox(&self, _: Request<v1::RemovePodSandboxRequest>) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        Err(not_yet("RemovePodSandbox"))
    }

    async fn pod_sandbox_status(&self, _: Request<v1::PodSandboxStatusRequest>) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        Err(not_yet("PodSandboxStatus"))
    }

    async fn list_pod_sandbox(&self, _: Request<v1::ListPodSandboxRequest>) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        Err(not_yet("ListPodSandbox"))
    }

    async fn create_container(&self, _: Request<v1::CreateContainerRequest>) -> Result<Response<v1::CreateContainerResponse>, Status> {
        Err(not_yet("CreateContainer"))
    }

    async fn start_container(&self, _: Request<v1::StartContainerRequest>) -> Result<Response<v1::StartContainerResponse>, Status> {
        Err(not_yet("StartContainer"))
    }

    async fn stop_container(&self, _: Request<v1::StopContainerRequest>) -> Result<Response<v1::StopContainerResponse>, Status> {
        Err(not_yet("StopContainer"))
    }

    async fn remove_container(&self, _: Request<v1::RemoveContainerRequest>) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        Err(not_yet("RemoveContainer"))
    }

    async fn list_containers(&self, _: Request<v1::ListContainersRequest>) -> Result<Response<v1::ListContainersResponse>, Status> {
        Err(not_yet("ListContainers"))
    }

    async fn container_status(&self, _: Request<v1::ContainerStatusRequest>) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        Err(not_yet("ContainerStatus"))
    }

    async fn update_container_resources(&self, _: Request<v1::UpdateContainerResourcesRequest>) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        Err(not_yet("UpdateContainerResources"))
    }

    async fn reopen_container_log(&self, _: Request<v1::ReopenContainerLogRequest>) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        Err(not_yet("ReopenContainerLog"))
    }

    async fn exec_sync(&self, _: Request<v1::ExecSyncRequest>) -> Result<Response<v1::ExecSyncResponse>, Status> {
        Err(not_yet("ExecSync"))
    }

    async fn exec(&self, _: Request<v1::ExecRequest>) -> Result<Response<v1::ExecResponse>, Status> {
        Err(not_yet("Exec"))
    }

    async fn attach(&self, _: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        Err(not_yet("Attach"))
    }

    async fn port_forward(&self, _: Request<v1::PortForwardRequest>) -> Result<Response<v1::PortForwardResponse>, Status> {
        Err(not_yet("PortForward"))
    }

    async fn container_stats(&self, _: Request<v1::ContainerStatsRequest>) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        Err(not_yet("ContainerStats"))
    }

    async fn list_container_stats(&self, _: Request<v1::ListContainerStatsRequest>) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        Err(not_yet("ListContainerStats"))
    }

    async fn pod_sandbox_stats(&self, _: Request<v1::PodSandboxStatsRequest>) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        Err(not_yet("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(&self, _: Request<v1::ListPodSandboxStatsRequest>) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        Err(not_yet("ListPodSandboxStats"))
    }

    async fn update_runtime_config(&self, _: Request<v1::UpdateRuntimeConfigRequest>) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        Err(not_yet("UpdateRuntimeConfig"))
    }

    async fn checkpoint_container(&self, _: Request<v1::CheckpointContainerRequest>) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        Err(not_yet("CheckpointContainer"))
    }

    async fn list_metric_descriptors(&self, _: Request<v1::ListMetricDescriptorsRequest>) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        Err(not_yet("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(&self, _: Request<v1::ListPodSandboxMetricsRequest>) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        Err(not_yet("ListPodSandboxMetrics"))
    }
}
