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
        match container.state() {
            ContainerState::Running => {
                let shim = container.shim().ok_or_else(|| Error::FailedPrecondition(format!("container {} has no shim", container.id)))?;
                let json = serde_json::to_vec(&berth_oci::container::resources(&resources)).map_err(|e| Error::Internal(e.to_string()))?;
                shim.update(Some(json), Vec::new()).await?;
            }
            ContainerState::Created => {}
            state => return Err(Error::FailedPrecondition(format!("container {} is {state:?}", container.id))),
        }
        container.record().resources = resources;
        self.save_container(&container).await?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }
}
