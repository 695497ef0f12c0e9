//! berth's own Containers service (crates/api, `containers.proto`): copy
//! files in and out of a running container for `berthctl cp`, on berthd's
//! side, so the container needs no tar of its own.
//!
//! Only a running container: its root is `/proc/<init pid>/root`, the view
//! its processes have (volumes included), and paths resolve inside it
//! (`in_root`). A stopped container has no such view (its rootfs is
//! unmounted with its shim), so copying is refused with
//! FailedPrecondition, naming the state.

use std::{os::fd::OwnedFd, pin::Pin, sync::Arc};

use berth_api::admin::v1::{containers_server::Containers, CopyFromChunk, CopyFromRequest, CopyToChunk, CopyToResponse};
use tonic::{Request, Response, Status, Streaming};

use super::{client_stream, copy_from::copy_from, copy_to::copy_to, in_root::container_root};
use crate::{
    error::{Error, Result},
    runtime::Runtime,
    state::ContainerState,
};

pub struct AdminContainers {
    rt: Arc<Runtime>,
}

impl AdminContainers {
    pub(crate) fn new(rt: Arc<Runtime>) -> Self {
        Self { rt }
    }

    /// The root of the running container `id`, checked to still be that
    /// container's after it was opened (its pid could have been reused).
    fn root_of(&self, id: &str) -> Result<(String, OwnedFd)> {
        let container = self.rt.containers.get(id)?;
        let running = |c: &crate::state::Container| {
            let r = c.record();
            (r.state == ContainerState::Running && r.pid != 0).then_some(r.pid)
        };
        let pid = running(&container)
            .ok_or_else(|| Error::FailedPrecondition(format!("container {} is {:?}: cp works on a running container", container.id, container.state())))?;
        let root = container_root(pid)?;
        if running(&container) != Some(pid) {
            return Err(Error::FailedPrecondition(format!("container {} exited during the copy", container.id)));
        }
        Ok((container.id.clone(), root))
    }
}

pub type CopyFromStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<CopyFromChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Containers for AdminContainers {
    type CopyFromStream = CopyFromStream;

    async fn copy_from(&self, req: Request<CopyFromRequest>) -> Result<Response<CopyFromStream>, Status> {
        crate::error::logged("Containers.CopyFrom", false, self.start_copy_from(req.into_inner())).map(Response::new)
    }

    async fn copy_to(&self, req: Request<Streaming<CopyToChunk>>) -> Result<Response<CopyToResponse>, Status> {
        crate::error::logged("Containers.CopyTo", false, self.copy_to_container(req.into_inner()).await).map(Response::new)
    }
}

impl AdminContainers {
    fn start_copy_from(&self, req: CopyFromRequest) -> Result<CopyFromStream, Status> {
        let (id, root) = self.root_of(&req.container_id)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let errors = tx.clone();
        tokio::task::spawn_blocking(move || match copy_from(root, &req, tx) {
            Ok(entries) => tracing::info!(container_id = %id, path = %req.path, entries, "cp from"),
            Err(e) => {
                tracing::info!(container_id = %id, path = %req.path, error = %e, "cp from failed");
                let _ = errors.blocking_send(Err(Status::from(e)));
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn copy_to_container(&self, mut stream: Streaming<CopyToChunk>) -> Result<CopyToResponse, Status> {
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("the copy stream is empty"))?;
        let (id, root) = self.root_of(&first.container_id)?;
        let (tx, reader) = client_stream::channel();
        let (dest, name) = (first.path.clone(), first.name.clone());
        let worker = tokio::task::spawn_blocking(move || copy_to(root, &dest, &name, reader));
        client_stream::feed(first, &mut stream, tx, |chunk| chunk.data).await;
        let result = worker.await.map_err(|e| Status::internal(format!("copy task: {e}")))?;
        match result {
            Ok(entries) => {
                tracing::info!(container_id = %id, entries, "cp to");
                Ok(CopyToResponse { entries })
            }
            Err(e) => Err(e.into()),
        }
    }
}
