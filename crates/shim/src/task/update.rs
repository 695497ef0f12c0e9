use containerd_shim_protos::api::UpdateTaskRequest;
use oci_spec::runtime::LinuxResources;
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::error::{Result, ShimError};

/// Annotation on an Update that asks the shim to reopen the container's CRI
/// log (after the kubelet rotated it). The Task API has no verb for it, and
/// Update is the call that changes a running container's settings.
pub const REOPEN_LOG_ANNOTATION: &str = "io.berth.log.reopen";

impl TaskService {
    /// Applies new resource limits (OCI LinuxResources as JSON) to the
    /// container's cgroup, and/or reopens its log.
    pub(super) fn update_task(&self, req: &UpdateTaskRequest) -> Result<Empty> {
        let (cgroup, init) = self.with_container(&req.id, |c| Ok((c.cgroup.clone(), c.init.clone())))?;
        if let Some(any) = req.resources.as_ref() {
            let resources: LinuxResources =
                serde_json::from_slice(&any.value).map_err(|e| ShimError::InvalidArgument(format!("resources are not OCI LinuxResources: {e}")))?;
            let cg = cgroup.ok_or_else(|| ShimError::FailedPrecondition("container has no cgroup".into()))?;
            cg.update(&resources)?;
        }
        if req.annotations.contains_key(REOPEN_LOG_ANNOTATION) {
            init.io.reopen_log()?;
        }
        Ok(Empty::new())
    }
}
