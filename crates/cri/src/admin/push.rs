//! Images.Push: a stored image to its registry, streaming each layer's
//! upload as it goes.

use std::sync::Arc;

use berth_api::admin::v1::{push_event::Event, PushEvent, PushRequest, Pushed};
use berth_image::progress::Progress;
use oci_client::secrets::RegistryAuth;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{layer_progress, PushEvents};
use crate::{image::status_of, ImageServer};

pub(super) fn push(images: Arc<ImageServer>, req: PushRequest) -> Result<PushEvents, Status> {
    if req.image.is_empty() {
        return Err(Status::invalid_argument("image is empty"));
    }
    // A bad name or an unknown image is an error of the call, not of the stream.
    berth_image::pull::parse_reference(&req.image).map_err(status_of)?;
    let record = images.index.resolve(&req.image).ok_or_else(|| status_of(berth_image::Error::UnknownImage(req.image.clone())))?;
    let auth = if req.username.is_empty() { RegistryAuth::Anonymous } else { RegistryAuth::Basic(req.username, req.password) };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        // Its blobs stay while they are sent, whatever removes the image.
        let lease = images.leases.lease();
        lease.hold_all(&record.blobs);
        let started = std::time::Instant::now();
        let (progress, mut events) = Progress::channel();
        let push = berth_image::push::push(&record, &req.image, auth, &images.pull_options, &images.content, &progress);
        tokio::pin!(push);
        let result = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => {
                    let _ = tx.send(Ok(PushEvent { event: Some(Event::Layer(layer_progress(event))) })).await;
                }
                result = &mut push => break result,
            }
        };
        while let Ok(event) = events.try_recv() {
            let _ = tx.send(Ok(PushEvent { event: Some(Event::Layer(layer_progress(event))) })).await;
        }
        let last = match result {
            Ok(pushed) => {
                tracing::info!(image = %pushed.reference, digest = %pushed.manifest_digest, elapsed_ms = started.elapsed().as_millis() as u64, "pushed");
                Ok(PushEvent { event: Some(Event::Pushed(Pushed { reference: pushed.reference, manifest_digest: pushed.manifest_digest, size: pushed.size })) })
            }
            Err(e) => {
                tracing::warn!(image = %req.image, error = %e, "push failed");
                Err(status_of(e))
            }
        };
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
