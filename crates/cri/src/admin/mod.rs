//! berth's own Images service (crates/api): pull with per-layer progress
//! and import from archives, for berthctl. It works on the same stores as
//! the CRI ImageService, so what it pulls or imports the kubelet sees.

mod import;
mod pull;

// The Containers service (berthctl cp).
mod containers;
mod copy_from;
mod copy_to;
mod in_root;
pub use containers::AdminContainers;

use std::{pin::Pin, sync::Arc};

use berth_api::admin::v1::{images_server::Images, ImportChunk, ImportResponse, PullEvent, PullRequest};
use tonic::{Request, Response, Status, Streaming};

use crate::ImageServer;

pub struct AdminImages {
    images: Arc<ImageServer>,
}

impl AdminImages {
    pub fn new(images: Arc<ImageServer>) -> Self {
        Self { images }
    }
}

pub type PullEvents = Pin<Box<dyn tokio_stream::Stream<Item = Result<PullEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Images for AdminImages {
    type PullStream = PullEvents;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<PullEvents>, Status> {
        pull::pull(self.images.clone(), req.into_inner()).map(Response::new)
    }

    async fn import(&self, req: Request<Streaming<ImportChunk>>) -> Result<Response<ImportResponse>, Status> {
        import::import(&self.images, req.into_inner()).await.map(Response::new)
    }
}
