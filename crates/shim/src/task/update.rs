use berth_oci::spec::{OOM_SCORE_ADJ_ANNOTATION, REOPEN_LOG_ANNOTATION};
use containerd_shim_protos::api::UpdateTaskRequest;
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    runtime,
};

impl TaskService {
    /// Applies new resource limits (OCI LinuxResources as JSON) to the
    /// container's cgroup and a new oom_score_adj to its init, and/or
    /// reopens its log.
    pub(super) fn update_task(&self, req: &UpdateTaskRequest) -> Result<Empty> {
        let (cgroups_path, init) = self.with_container(&req.id, |c| Ok((c.host.cgroups_path.clone(), c.init.clone())))?;
        let oom_score_adj = match req.annotations.get(OOM_SCORE_ADJ_ANNOTATION) {
            Some(value) => Some(value.parse::<i32>().map_err(|_| ShimError::InvalidArgument(format!("{OOM_SCORE_ADJ_ANNOTATION} {value:?} is not a number")))?),
            None => None,
        };
        // Parsed and applied by `berth-runtime update` (both cgroup drivers;
        // the init's oom_score_adj with the init's clamp rule).
        let change = runtime::Update {
            cgroups_path: &cgroups_path,
            resources_json: req.resources.as_ref().map(|any| any.value.as_slice()),
            oom_score_adj: oom_score_adj.map(|adj| (init.state().pid, adj)),
        };
        runtime::update(&change, &self.reaper)?;
        if req.annotations.contains_key(REOPEN_LOG_ANNOTATION) {
            init.io.reopen_log()?;
        }
        Ok(Empty::new())
    }
}
