//! CRI calls every test node makes the same way, whatever runtime serves
//! the socket (berthd, or containerd with berth-shim).

use std::time::{Duration, Instant};

use k8s_cri::v1::{self, runtime_service_client::RuntimeServiceClient};
use tonic::transport::Channel;

pub async fn exec_sync(rt: &mut RuntimeServiceClient<Channel>, id: &str, cmd: &[&str], timeout: i64) -> Result<v1::ExecSyncResponse, tonic::Status> {
    let req = v1::ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout };
    rt.exec_sync(req).await.map(|r| r.into_inner())
}

pub async fn container_status(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> v1::ContainerStatus {
    rt.container_status(v1::ContainerStatusRequest { container_id: id.into(), verbose: false }).await.unwrap().into_inner().status.unwrap()
}

/// Polls until the container has exited; `context` adds to the failure
/// message (a runtime's log, say).
pub async fn wait_exited(rt: &mut RuntimeServiceClient<Channel>, id: &str, within: Duration, context: impl Fn() -> String) -> v1::ContainerStatus {
    let deadline = Instant::now() + within;
    loop {
        let s = container_status(rt, id).await;
        if s.state == v1::ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(Instant::now() < deadline, "container {id} still {:?} after {within:?}{}", s.state, context());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
