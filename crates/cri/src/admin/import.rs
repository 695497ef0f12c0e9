//! Images.Import: an archive streamed in chunks, imported on the blocking
//! pool as it arrives (no copy of the archive is kept), then recorded.

use std::sync::Arc;

use berth_api::admin::v1::{ImportChunk, ImportResponse, ImportedImage};
use tonic::{Status, Streaming};

use super::client_stream;
use crate::{image::status_of, ImageServer};

pub(super) async fn import(images: &ImageServer, mut stream: Streaming<ImportChunk>) -> Result<ImportResponse, Status> {
    let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("the import stream is empty"))?;
    let base_name = Some(first.base_name.clone()).filter(|b| !b.is_empty());
    if let Some(base) = &base_name {
        berth_image::pull::parse_reference(base).map_err(|e| Status::invalid_argument(format!("base_name: {e}")))?;
    }
    let (tx, reader) = client_stream::channel();
    let (content, snapshots) = (images.content.clone(), images.snapshots.clone());
    let started = std::time::Instant::now();
    // Held until every image is indexed (the end of this function), so a
    // concurrent garbage collection keeps what the import stored.
    let lease = Arc::new(images.leases.lease());
    let importer_lease = lease.clone();
    let worker = tokio::task::spawn_blocking(move || berth_image::import::import_archive(reader, base_name.as_deref(), &content, &snapshots, &importer_lease));
    client_stream::feed(first, &mut stream, tx, |chunk| chunk.data).await;
    let pulled = worker.await.map_err(|e| Status::internal(format!("import task: {e}")))?.map_err(status_of)?;
    let mut imported: Vec<ImportedImage> = Vec::new();
    for p in &pulled {
        let record = images.index.add(p).map_err(status_of)?;
        tracing::info!(image = %p.reference, digest = %record.id, elapsed_ms = started.elapsed().as_millis() as u64, "imported");
        imported.retain(|i| i.image_id != record.id);
        imported.push(ImportedImage { image_id: record.id, repo_tags: record.repo_tags });
    }
    Ok(ImportResponse { images: imported })
}
