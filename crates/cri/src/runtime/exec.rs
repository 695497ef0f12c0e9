use std::sync::Arc;

use berth_streaming::Pending;
use k8s_cri::v1;

use super::Runtime;
use crate::error::{Error, Result};

impl Runtime {
    /// Checks the request now (a stopped container is FailedPrecondition
    /// here, not a broken stream later) and answers with a single-use URL
    /// on the streaming server.
    pub(crate) async fn exec(self: &Arc<Self>, req: v1::ExecRequest) -> Result<v1::ExecResponse> {
        let container = self.containers.get(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument("cmd is empty".into()));
        }
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Error::InvalidArgument("one of stdin, stdout and stderr must be true".into()));
        }
        if req.tty && req.stderr {
            return Err(Error::InvalidArgument("tty and stderr cannot both be true (a terminal carries both outputs)".into()));
        }
        container.shim_for_exec()?;
        let pending =
            Pending::Exec { container_id: container.id.clone(), cmd: req.cmd, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr };
        let url = self.streaming.url_for(pending).map_err(Error::io("streaming token"))?;
        Ok(v1::ExecResponse { url })
    }
}
