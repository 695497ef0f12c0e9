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
        // Removed while this call waited for the container's lock.
        self.containers.get(&container.id)?;
        let state = container.state();
        if !state.can_update_resources() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {state:?}; only a Created or Running container's resources can change",
                container.id
            )));
        }
        // What the update leaves at zero stays, in the cgroup, the spec
        // and so in the record too.
        let merged = berth_oci::container::merged_resources(&container.record().resources, &resources);
        let mut spec_before = None;
        if state == ContainerState::Running {
            let shim = container.shim().ok_or_else(|| Error::FailedPrecondition(format!("container {} has no shim", container.id)))?;
            let json = serde_json::to_vec(&berth_oci::container::resources(&resources)).map_err(|e| Error::Internal(e.to_string()))?;
            // The init's oom_score_adj, which OCI resources do not carry.
            let annotations = match resources.oom_score_adj {
                0 => Vec::new(),
                adj => vec![(berth_oci::spec::OOM_SCORE_ADJ_ANNOTATION.to_string(), adj.to_string())],
            };
            shim.update(Some(json), annotations).await?;
        } else {
            // No task yet: Start creates it from the bundle's spec, which
            // takes the new limits (as containerd updates a created
            // container's spec).
            spec_before = Some(self.update_bundle_resources(&container.id, resources).await?);
        }
        let before = std::mem::replace(&mut container.record().resources, merged);
        if let Err(e) = self.save_container(&container).await {
            // Not recorded, so not applied: a Start must not get limits
            // that a restarted berthd would not show.
            container.record().resources = before;
            if let Some(spec) = spec_before {
                if let Err(undo) = self.write_bundle_spec(&container.id, spec).await {
                    tracing::error!(container_id = %container.id, error = %undo, "put back the spec after a failed update");
                }
            }
            return Err(e);
        }
        Ok(v1::UpdateContainerResourcesResponse {})
    }

    /// Merges `resources` into the bundle's spec; returns the spec as it
    /// was.
    async fn update_bundle_resources(&self, id: &str, resources: v1::LinuxContainerResources) -> Result<Vec<u8>> {
        let path = self.paths.bundle(id)?.join("config.json");
        blocking(move || {
            let before = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
            let mut spec: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&before).map_err(Error::internal(format!("parse {}", path.display())))?;
            berth_oci::container::update_resources(&mut spec, &resources);
            let json = serde_json::to_vec_pretty(&spec).map_err(Error::internal("encode spec"))?;
            berth_store::atomic_write(&path, &json, 0o600)?;
            Ok(before)
        })
        .await
    }

    async fn write_bundle_spec(&self, id: &str, spec: Vec<u8>) -> Result<()> {
        let path = self.paths.bundle(id)?.join("config.json");
        blocking(move || Ok(berth_store::atomic_write(&path, &spec, 0o600)?)).await
    }
}
