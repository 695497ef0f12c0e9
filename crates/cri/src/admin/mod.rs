//! berth's own Images service (crates/api): pull and push with per-layer
//! progress, import from and save to archives, tag, history and a check of
//! credentials, for
//! berthctl. It works on the same stores as the CRI ImageService, so what
//! it pulls, imports or tags the kubelet sees.

mod history;
mod import;
mod login;
mod pull;
mod push;
mod save;
mod tag;

// The Containers service (berthctl cp).
mod client_stream;
mod containers;
mod copy_from;
mod copy_to;
mod in_root;
pub use containers::AdminContainers;

use std::{pin::Pin, sync::Arc};

use berth_api::admin::v1::{
    images_server::Images, HistoryRequest, HistoryResponse, ImportChunk, ImportResponse, LayerProgress, LayerState, LoginRequest, LoginResponse, PullEvent,
    PullRequest, PushEvent, PushRequest, SaveChunk, SaveRequest, TagRequest, TagResponse,
};
use berth_image::progress;
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
pub type PushEvents = Pin<Box<dyn tokio_stream::Stream<Item = Result<PushEvent, Status>> + Send>>;
pub type SaveChunks = Pin<Box<dyn tokio_stream::Stream<Item = Result<SaveChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Images for AdminImages {
    type PullStream = PullEvents;
    type PushStream = PushEvents;
    type SaveStream = SaveChunks;

    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<PullEvents>, Status> {
        crate::error::logged("Images.Pull", false, pull::pull(self.images.clone(), req.into_inner())).map(Response::new)
    }

    async fn import(&self, req: Request<Streaming<ImportChunk>>) -> Result<Response<ImportResponse>, Status> {
        crate::error::logged("Images.Import", false, import::import(&self.images, req.into_inner()).await).map(Response::new)
    }

    async fn push(&self, req: Request<PushRequest>) -> Result<Response<PushEvents>, Status> {
        crate::error::logged("Images.Push", false, push::push(self.images.clone(), req.into_inner())).map(Response::new)
    }

    async fn save(&self, req: Request<SaveRequest>) -> Result<Response<SaveChunks>, Status> {
        crate::error::logged("Images.Save", false, save::save(self.images.clone(), req.into_inner())).map(Response::new)
    }

    async fn tag(&self, req: Request<TagRequest>) -> Result<Response<TagResponse>, Status> {
        crate::error::logged("Images.Tag", false, tag::tag(&self.images, req.into_inner())).map(Response::new)
    }

    async fn history(&self, req: Request<HistoryRequest>) -> Result<Response<HistoryResponse>, Status> {
        crate::error::logged("Images.History", false, history::history(self.images.clone(), req.into_inner()).await).map(Response::new)
    }

    async fn login(&self, req: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        crate::error::logged("Images.Login", false, login::login(&self.images, req.into_inner()).await).map(Response::new)
    }
}

/// A layer's progress (of a pull or a push) as the API says it.
fn layer_progress(p: progress::LayerProgress) -> LayerProgress {
    let state = match p.state {
        progress::LayerState::Waiting => LayerState::Waiting,
        progress::LayerState::Downloading => LayerState::Downloading,
        progress::LayerState::Downloaded => LayerState::Downloaded,
        progress::LayerState::Unpacking => LayerState::Unpacking,
        progress::LayerState::Done => LayerState::Done,
        progress::LayerState::Exists => LayerState::Exists,
        progress::LayerState::Uploading => LayerState::Uploading,
        progress::LayerState::Pushed => LayerState::Pushed,
    };
    LayerProgress { digest: p.digest, size: p.size, stored: p.stored, state: state as i32 }
}
