use containerd_shim_protos::api::ShutdownRequest;
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::error::Result;

impl TaskService {
    /// Exits the shim if it holds no container (or `now` is set); otherwise
    /// a no-op, as in containerd: a live container keeps its shim.
    pub(super) fn shutdown_shim(&self, req: &ShutdownRequest) -> Result<Empty> {
        if req.now || self.lock().is_none() {
            self.request_exit();
        }
        Ok(Empty::new())
    }
}
