//! Port-forward's connection: TCP to localhost inside the pod's network
//! namespace, made by berthd itself (no socat, no nsenter). A fresh thread
//! enters the namespace, connects and exits; the socket stays in the
//! namespace it was made in, and no other thread ever changes namespace.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::Runtime;
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Runtime {
    pub(crate) async fn dial_in_pod(self: &Arc<Self>, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let sandbox = self.sandboxes.get(pod_id)?;
        if !sandbox.is_ready() {
            return Err(Error::FailedPrecondition(format!("pod sandbox {} is not ready", sandbox.id)));
        }
        let netns = sandbox.record().netns.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("port-forward".into())
            .spawn(move || {
                let connected = (|| {
                    if let Some(ns) = &netns {
                        let file = std::fs::File::open(ns).map_err(|e| format!("open {}: {e}", ns.display()))?;
                        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("enter {}: {e}", ns.display()))?;
                    }
                    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
                    let stream = std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
                        .or_else(|e| std::net::TcpStream::connect_timeout(&SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)), CONNECT_TIMEOUT).map_err(|_| e))
                        .map_err(|e| e.to_string())?;
                    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Ok::<_, String>(stream)
                })();
                let _ = tx.send(connected);
            })
            .map_err(|e| Error::Internal(format!("spawn port-forward thread: {e}")))?;
        let stream = rx.await.map_err(|_| Error::Internal("port-forward thread died".into()))?.map_err(Error::Unavailable)?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| Error::Internal(e.to_string()))
    }
}
