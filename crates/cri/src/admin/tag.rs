//! Images.Tag: one more name for a stored image.

use berth_api::admin::v1::{TagRequest, TagResponse};
use tonic::Status;

use crate::{image::status_of, ImageServer};

pub(super) fn tag(images: &ImageServer, req: TagRequest) -> Result<TagResponse, Status> {
    if req.source.is_empty() || req.target.is_empty() {
        return Err(Status::invalid_argument("source and target must both be given"));
    }
    let (record, reference) = images.index.tag(&req.source, &req.target).map_err(status_of)?;
    tracing::info!(image = %reference, digest = %record.id, "tagged");
    Ok(TagResponse { image_id: record.id, reference })
}
