//! Port-forward's connection: TCP to localhost inside the pod's network
//! namespace, made by berthd itself (no socat, no nsenter). The socket
//! stays in the namespace it was made in.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::{pod_netns::in_pod_netns, Runtime};
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Runtime {
    pub(crate) async fn dial_in_pod(self: &Arc<Self>, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let sandbox = self.sandboxes.get(pod_id)?;
        if !sandbox.is_ready() {
            return Err(Error::FailedPrecondition(format!("pod sandbox {} is not ready", sandbox.id)));
        }
        let netns = sandbox.record().netns.clone();
        let stream = in_pod_netns(netns, move || {
            let v4 = SocketAddr::from(([127, 0, 0, 1], port));
            let v6 = SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port));
            let stream = std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
                .or_else(|e| std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e))
                .map_err(|e| e.to_string())?;
            stream.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(stream)
        })
        .await?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| Error::Internal(e.to_string()))
    }
}
