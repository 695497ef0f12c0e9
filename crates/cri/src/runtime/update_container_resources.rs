use std::sync::Arc;

use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::{blocking, Error, Result},
    state::ContainerState,
};

impl Runtime {
    /// New limits for a container: applied to its cgroup by the shim when
    /// it runs, written into its bundle's spec for its Start when it was
    /// only created, and kept in its record for ContainerStatus.
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
        if state == ContainerState::Running {
            let shim = container.shim().ok_or_else(|| Error::FailedPrecondition(format!("container {} has no shim", container.id)))?;
            let json = serde_json::to_vec(&berth_oci::container::resources(&resources)).map_err(|e| Error::Internal(e.to_string()))?;
            shim.update(Some(json), Vec::new()).await?;
        } else {
            // No task yet: Start creates it from the bundle's spec, which
            // takes the new limits (as containerd updates a created
            // container's spec).
            self.update_bundle_resources(&container.id, resources.clone()).await?;
        }
        container.record().resources = resources;
        self.save_container(&container).await?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }

    async fn update_bundle_resources(&self, id: &str, resources: v1::LinuxContainerResources) -> Result<()> {
        let path = self.paths.bundle(id)?.join("config.json");
        blocking(move || {
            let text = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
            let mut spec: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&text).map_err(Error::internal(format!("parse {}", path.display())))?;
            berth_oci::container::update_resources(&mut spec, &resources);
            let json = serde_json::to_vec_pretty(&spec).map_err(Error::internal("encode spec"))?;
            Ok(berth_store::atomic_write(&path, &json, 0o600)?)
        })
        .await
    }
}
