//! One forwarded connection, whatever the transport: a TCP connection to
//! the port inside the pod, bytes pumped both ways until either side ends.

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};

use crate::{server::Activity, Backend};

/// Connects to `port` in `pod_id` and pumps: `from_client` into the
/// connection (its end half-closes the connection), the connection's bytes
/// into `to_client` (dropped at the connection's EOF). A failure to connect
/// goes to `errors` as text; other streams are not affected.
pub(crate) async fn forward(
    backend: Arc<dyn Backend>,
    pod_id: String,
    port: u16,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    to_client: mpsc::Sender<Vec<u8>>,
    errors: mpsc::Sender<Vec<u8>>,
    activity: Activity,
) {
    let conn = match backend.port_forward(&pod_id, port).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(pod_id, port, error = %e, "port-forward connect failed");
            let _ = errors.send(format!("failed to connect to localhost:{port} inside pod {pod_id}: {e}").into_bytes()).await;
            return;
        }
    };
    drop(errors);
    let (mut read, mut write) = conn.into_split();
    let inbound = {
        let activity = activity.clone();
        async move {
            while let Some(data) = from_client.recv().await {
                activity.touch();
                if write.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = write.shutdown().await;
        }
    };
    let outbound = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    activity.touch();
                    if to_client.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    tokio::join!(inbound, outbound);
}
