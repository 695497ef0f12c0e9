use containerd_shim_protos::api::{ConnectRequest, ConnectResponse};

use super::TaskService;
use crate::error::Result;

impl TaskService {
    /// Tells a (re)connecting client who we are: shim pid, task pid (0
    /// before Create), version. Answers even with no container, so a client
    /// can learn the shim's pid right after `start`.
    pub(super) fn connect_info(&self, _req: &ConnectRequest) -> Result<ConnectResponse> {
        let task_pid = self.lock().as_ref().map(|c| c.init.state().pid).unwrap_or(0);
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.task_pid = task_pid as u32;
        resp.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(resp)
    }
}
