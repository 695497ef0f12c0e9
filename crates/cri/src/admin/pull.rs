//! Images.Pull: the CRI pull, streaming each layer's progress as it goes.

use std::sync::Arc;

use berth_api::admin::v1::{pull_event::Event, PullEvent, PullRequest, Pulled};
use berth_image::progress::{self, Progress};
use oci_client::secrets::RegistryAuth;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{layer_progress, PullEvents};
use crate::{image::status_of, ImageServer};

pub(super) fn pull(images: Arc<ImageServer>, req: PullRequest) -> Result<PullEvents, Status> {
    if req.image.is_empty() {
        return Err(Status::invalid_argument("image is empty"));
    }
    // A bad reference is an error of the call, not of the stream.
    berth_image::pull::parse_reference(&req.image).map_err(status_of)?;
    let auth = if req.username.is_empty() { RegistryAuth::Anonymous } else { RegistryAuth::Basic(req.username, req.password) };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // The pull runs to its end even if the client leaves: the kubelet may
    // be waiting on the same layers.
    tokio::spawn(async move {
        let (progress, mut events) = Progress::channel();
        let pull = images.pull_and_record(&req.image, auth, &progress);
        tokio::pin!(pull);
        let result = loop {
            tokio::select! {
                biased;
                Some(event) = events.recv() => {
                    let _ = tx.send(Ok(layer_event(event))).await;
                }
                result = &mut pull => break result,
            }
        };
        while let Ok(event) = events.try_recv() {
            let _ = tx.send(Ok(layer_event(event))).await;
        }
        let last = result.map(|record| PullEvent { event: Some(Event::Pulled(Pulled { image_id: record.id, reference: req.image.clone() })) });
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

fn layer_event(p: progress::LayerProgress) -> PullEvent {
    PullEvent { event: Some(Event::Layer(layer_progress(p))) }
}
