use containerd_shim_protos::api::ResizePtyRequest;
use protobuf::well_known_types::empty::Empty;

use super::TaskService;
use crate::error::{Result, ShimError};

impl TaskService {
    pub(super) fn resize(&self, req: &ResizePtyRequest) -> Result<Empty> {
        let p = self.with_container(&req.id, |c| {
            c.process(&req.exec_id).ok_or_else(|| ShimError::NotFound(format!("exec {:?} not found or not started", req.exec_id)))
        })?;
        p.io.resize(req.width, req.height)?;
        Ok(Empty::new())
    }
}
