use containerd_shim_protos::api::{PidsRequest, PidsResponse, ProcessInfo};

use super::TaskService;
use crate::error::Result;

impl TaskService {
    /// Every process in the container's cgroup (the init alone without one).
    pub(super) fn list_pids(&self, req: &PidsRequest) -> Result<PidsResponse> {
        let (cgroup, init_pid) = self.with_container(&req.id, |c| Ok((c.cgroup.clone(), c.init.state().pid)))?;
        let pids = match cgroup {
            Some(cg) => cg.procs()?,
            None => vec![init_pid],
        };
        let mut resp = PidsResponse::new();
        resp.processes = pids
            .into_iter()
            .map(|pid| {
                let mut info = ProcessInfo::new();
                info.pid = pid as u32;
                info
            })
            .collect();
        Ok(resp)
    }
}
