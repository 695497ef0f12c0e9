use std::sync::Arc;

use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::{Error, Result},
    state::ContainerState,
};

impl Runtime {
    /// New limits for a container: applied to its cgroup by the shim when
    /// it runs, and kept so a later Start (or a status) uses them.
    pub(crate) async fn update_container_resources(self: &Arc<Self>, req: v1::UpdateContainerResourcesRequest) -> Result<v1::UpdateContainerResourcesResponse> {
        let container = self.containers.get(&req.container_id)?;
        let resources = req.linux.ok_or_else(|| Error::InvalidArgument("linux resources are missing".into()))?;
        berth_oci::container::validate_resources(&resources)?;
        let _op = container.op.lock().await;
        let state = container.state();
        if !state.can_update_resources() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {state:?}; only a Created or Running container's resources can change",
                container.id
            )));
        }
        // A Created container gets the new limits at Start, from its record.
        if state == ContainerState::Running {
            let shim = container.shim().ok_or_else(|| Error::FailedPrecondition(format!("container {} has no shim", container.id)))?;
            let json = serde_json::to_vec(&berth_oci::container::resources(&resources)).map_err(|e| Error::Internal(e.to_string()))?;
            shim.update(Some(json), Vec::new()).await?;
        }
        container.record().resources = resources;
        self.save_container(&container).await?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }
}
