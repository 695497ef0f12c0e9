//! Serving the CRI on a unix socket. Takes a bound listener and a shutdown
//! future, so tests run it on a temp socket and stop it at will.

use std::{future::Future, sync::Arc, time::Duration};

use berth_api::admin::v1::{containers_server::ContainersServer, images_server::ImagesServer};
use berth_cri::{AdminImages, ImageServer, RuntimeServer};
use berth_h2_authority::AuthorityRepair;
use k8s_cri::v1::{image_service_server::ImageServiceServer, runtime_service_server::RuntimeServiceServer};

use crate::grpc_metrics::GrpcMetricsLayer;
use tokio::net::UnixListener;
use tokio_stream::{wrappers::UnixListenerStream, StreamExt};

/// How long in-flight RPCs may finish after shutdown was asked for. Clients
/// such as the kubelet keep their connection open for ever, so a graceful
/// stop must not wait for them to hang up.
pub const GRACE: Duration = Duration::from_secs(5);

pub async fn serve(
    listener: UnixListener,
    runtime: RuntimeServer,
    images: Arc<ImageServer>,
    metrics: Arc<berth_metrics::Metrics>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_containers = ContainersServer::new(runtime.admin_containers());
    let server = tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer(metrics))
        .add_service(RuntimeServiceServer::new(runtime))
        .add_service(ImageServiceServer::from_arc(images.clone()))
        // berth's own API (berthctl's import and pull with progress).
        .add_service(ImagesServer::new(AdminImages::new(images)))
        // berth's own API: berthctl cp.
        .add_service(admin_containers)
        // Every connection reads through AuthorityRepair, so clients that
        // send the socket path as :authority (grpc-core, grpc-java) are
        // served like grpc-go's `localhost`.
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityRepair::new)), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown => {}
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(GRACE, server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!("connections still open after {GRACE:?}; closing them");
            Ok(())
        }
    }
}
