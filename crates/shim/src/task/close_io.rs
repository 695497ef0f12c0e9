use containerd_shim_protos::api::CloseIORequest;
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::error::{Result, ShimError};

impl TaskService {
    /// Closes the process's stdin, so a program reading it sees EOF.
    pub(super) fn close_stdin(&self, req: &CloseIORequest) -> Result<Empty> {
        let p = self.with_container(&req.id, |c| {
            c.process(&req.exec_id).ok_or_else(|| ShimError::NotFound(format!("exec {:?} not found or not started", req.exec_id)))
        })?;
        if req.stdin {
            p.io.close_stdin();
        }
        Ok(Empty::new())
    }
}
