//! Images.History: the image config's history, newest first, each step
//! with the layer it made.

use std::sync::Arc;

use berth_api::admin::v1::{HistoryEntry, HistoryRequest, HistoryResponse};
use tonic::Status;

use crate::{image::status_of, ImageServer};

pub(super) async fn history(images: Arc<ImageServer>, req: HistoryRequest) -> Result<HistoryResponse, Status> {
    let record = images.index.resolve(&req.image).ok_or_else(|| status_of(berth_image::Error::UnknownImage(req.image.clone())))?;
    let id = record.id.clone();
    let steps = tokio::task::spawn_blocking(move || berth_image::export::history(&record, &images.content))
        .await
        .map_err(|e| Status::internal(format!("history task: {e}")))?
        .map_err(status_of)?;
    let entries = steps
        .into_iter()
        .rev()
        .map(|s| HistoryEntry {
            created: s.created,
            created_by: s.created_by,
            comment: s.comment,
            empty_layer: s.empty_layer,
            size: s.layer.as_ref().map_or(0, |l| l.size),
            layer_digest: s.layer.map(|l| l.digest).unwrap_or_default(),
        })
        .collect();
    Ok(HistoryResponse { image_id: id, entries })
}
