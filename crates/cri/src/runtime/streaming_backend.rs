//! The runtime as the streaming server's backend: what an exec, attach or
//! port-forward URL runs once its client connects.

use std::sync::Arc;

use berth_streaming::{Backend, ProcessIo};

use super::Runtime;

pub struct StreamingBackend(pub(crate) Arc<Runtime>);

#[async_trait::async_trait]
impl Backend for StreamingBackend {
    async fn exec(&self, container_id: &str, cmd: Vec<String>, tty: bool, io: ProcessIo) -> Result<i32, String> {
        self.0.stream_exec(container_id, cmd, tty, io).await.map_err(|e| e.to_string())
    }

    async fn attach(&self, container_id: &str, _tty: bool, io: ProcessIo) -> Result<i32, String> {
        self.0.stream_attach(container_id, io).await.map_err(|e| e.to_string())
    }

    async fn port_forward(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        self.0.dial_in_pod(pod_id, port).await.map_err(|e| e.to_string())
    }
}
