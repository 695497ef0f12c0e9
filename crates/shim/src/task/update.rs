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
        if let Some(any) = req.resources.as_ref() {
            // Parsed and applied by `berth-runtime update` (both drivers).
            runtime::update(&cgroups_path, &any.value, &self.reaper)?;
        }
        if let Some(value) = req.annotations.get(OOM_SCORE_ADJ_ANNOTATION) {
            let wanted: i32 = value.parse().map_err(|_| ShimError::InvalidArgument(format!("{OOM_SCORE_ADJ_ANNOTATION} {value:?} is not a number")))?;
            let pid = init.state().pid;
            let path = format!("/proc/{pid}/oom_score_adj");
            match berth_container::process::set_oom_score_adj_at(std::path::Path::new(&path), wanted) {
                Ok(Some(warning)) => log::warn!("{warning}"),
                Ok(None) => {}
                Err(e) => return Err(ShimError::Internal(format!("set oom_score_adj of pid {pid}: {e}"))),
            }
        }
        if req.annotations.contains_key(REOPEN_LOG_ANNOTATION) {
            init.io.reopen_log()?;
        }
        Ok(Empty::new())
    }
}
