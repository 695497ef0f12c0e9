use containerd_shim_protos::api::{ConnectRequest, ConnectResponse};

use super::TaskService;
use crate::error::Result;

impl TaskService {
    /// Tells a (re)connecting client who we are: shim pid, task pid, version.
    pub(super) fn connect_info(&self, req: &ConnectRequest) -> Result<ConnectResponse> {
        let task_pid = self.with_container(&req.id, |c| Ok(c.init.state().pid))?;
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.task_pid = task_pid as u32;
        resp.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(resp)
    }
}
