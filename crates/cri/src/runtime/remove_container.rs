use std::sync::Arc;

use k8s_cri::v1;

use super::Runtime;
use crate::{error::Result, state::Container};

impl Runtime {
    /// Stops the container if needed, then removes its thin layer, bundle
    /// and record and frees its name. Unknown is success (CRI). The log
    /// file stays: it is the kubelet's.
    pub(crate) async fn remove_container(self: &Arc<Self>, req: v1::RemoveContainerRequest) -> Result<v1::RemoveContainerResponse> {
        let Some(container) = self.containers.find(&req.container_id)? else { return Ok(v1::RemoveContainerResponse {}) };
        self.remove(&container).await?;
        Ok(v1::RemoveContainerResponse {})
    }

    pub(crate) async fn remove(&self, container: &Container) -> Result<()> {
        self.stop(container, 0).await?;
        let _op = container.op.lock().await;
        if self.containers.get(&container.id).is_err() {
            return Ok(()); // removed by a concurrent call
        }
        self.remove_container_files(&container.id).await?;
        // The image may have been removed while this container ran on its
        // layers: those are garbage now.
        let image_id = container.record().image_id.clone();
        if self.images.index.resolve(&image_id).is_none() {
            match self.images.collect_garbage().await {
                Ok((layers, blobs)) => tracing::info!(container_id = %container.id, layers, blobs, "collected the layers of a removed image"),
                Err(e) => tracing::warn!(container_id = %container.id, error = %e, "garbage collection"),
            }
        }
        let name = container.record().name.clone();
        self.containers.remove(&container.id);
        self.container_names.release(&name, &container.id);
        self.emit(v1::ContainerEventType::ContainerDeletedEvent, container);
        tracing::info!(container_id = %container.id, "container removed");
        Ok(())
    }
}
