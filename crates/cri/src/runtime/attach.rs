use std::sync::Arc;

use berth_streaming::Pending;
use k8s_cri::v1;

use super::Runtime;
use crate::{
    error::{Error, Result},
    state::ContainerState,
};

impl Runtime {
    /// A single-use URL to the container's own stdio, running or not yet
    /// started. The container's tty setting decides the streams: with a
    /// terminal, stderr is part of stdout.
    pub(crate) async fn attach(self: &Arc<Self>, req: v1::AttachRequest) -> Result<v1::AttachResponse> {
        let container = self.containers.get(&req.container_id)?;
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Error::InvalidArgument("one of stdin, stdout and stderr must be true".into()));
        }
        // A Created container can be attached to before it starts: the
        // client then sees its output from the first byte (StartContainer
        // waits for it; see `EarlyAttach`).
        let early = container.state() == ContainerState::Created;
        if !early {
            container.shim_for_exec()?;
        }
        let config = container.record().config.clone();
        if req.stdin && !config.stdin {
            return Err(Error::InvalidArgument(format!("container {} was not created with stdin; attach without it", container.id)));
        }
        let pending =
            Pending::Attach { container_id: container.id.clone(), tty: config.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr && !config.tty };
        let url = self.streaming.url_for(pending).map_err(Error::io("streaming token"))?;
        if early {
            container.early_attach.expect();
        }
        Ok(v1::AttachResponse { url })
    }
}
