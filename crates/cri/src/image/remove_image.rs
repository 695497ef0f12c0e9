use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};
use tonic::Status;

use super::{status_of, ImageServer};

impl ImageServer {
    /// Removes the image with all its tags, then whatever layers and blobs
    /// no other image uses. An unknown image is success, as the CRI says.
    pub(super) async fn remove(&self, req: RemoveImageRequest) -> Result<RemoveImageResponse, Status> {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let Some(record) = self.index.resolve(&name) else { return Ok(RemoveImageResponse {}) };
        self.index.remove(&record.id).map_err(status_of)?;
        let collected = self.collect_garbage().await.map_err(status_of)?;
        tracing::info!(image = %name, digest = %record.id, layers = collected.0, blobs = collected.1, "removed image");
        Ok(RemoveImageResponse {})
    }

    /// Removes the layers and blobs no image references. Layers under a
    /// container's thin snapshot stay (they are its parents) and go with a
    /// later collection, once the container is removed.
    pub(crate) async fn collect_garbage(&self) -> Result<(usize, usize), berth_image::Error> {
        let _gc = self.gc_lock.lock().await;
        let (index, content, snapshots, leases) = (self.index.clone(), self.content.clone(), self.snapshots.clone(), self.leases.clone());
        tokio::task::spawn_blocking(move || super::gc::collect(&index, &content, &snapshots, &leases))
            .await
            .map_err(|e| berth_image::Error::BadImage(format!("gc task: {e}")))?
    }
}
