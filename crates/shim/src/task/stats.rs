use containerd_shim_protos::api::{StatsRequest, StatsResponse};

use super::TaskService;
use crate::{
    error::{Result, ShimError},
    metrics,
};

impl TaskService {
    /// cgroup usage as containerd's v1 or v2 Metrics. Works until Delete,
    /// also after the container exited: that is when a client reads
    /// `oom_kill` to tell an OOM kill from any other SIGKILL.
    pub(super) fn stats_of(&self, req: &StatsRequest) -> Result<StatsResponse> {
        let cgroup = self.with_container(&req.id, |c| c.cgroup.clone().ok_or_else(|| ShimError::FailedPrecondition("container has no cgroup".into())))?;
        let stats = cgroup.stats()?;
        let mut resp = StatsResponse::new();
        resp.stats = Some(metrics::to_any(cgroup.version(), &stats)?).into();
        Ok(resp)
    }
}
