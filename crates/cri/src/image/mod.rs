//! ImageService: one file per RPC; this file routes and holds the stores.

mod gc;
mod image_fs_info;
mod image_status;
mod lease_image;
mod list_images;
mod pull_image;
mod remove_image;

use std::sync::Arc;

use berth_image::{
    content::ContentStore,
    index::ImageIndex,
    lease::Leases,
    pull::{BlobLocks, PullOptions},
};
use berth_snapshot::Overlay;
use k8s_cri::v1::{self, image_service_server::ImageService};
use tonic::{Request, Response, Status};

use crate::error::logged;

/// The image stores, shared by the ImageService and (later) container
/// creation.
pub struct ImageServer {
    pub(crate) paths: berth_store::Paths,
    pub(crate) index: Arc<ImageIndex>,
    pub(crate) content: Arc<ContentStore>,
    pub(crate) snapshots: Arc<Overlay>,
    pub(crate) pull_options: PullOptions,
    pub(crate) blob_locks: BlobLocks,
    /// What pulls, imports and container creations in flight use before
    /// the index refers to it; garbage collection leaves it alone.
    pub(crate) leases: Arc<Leases>,
    /// Serialises garbage collections with each other.
    pub(crate) gc_lock: tokio::sync::Mutex<()>,
    pub(crate) metrics: Arc<berth_metrics::Metrics>,
}

impl ImageServer {
    /// Opens (or creates) the stores under `paths`; the index is reloaded
    /// from its records, so images survive a restart of berthd.
    /// Unpacks a crash interrupted are removed here; their layers are
    /// unpacked again by the next pull (the downloaded blobs are kept).
    pub fn open(paths: berth_store::Paths, pull_options: PullOptions, metrics: Arc<berth_metrics::Metrics>) -> Result<Self, berth_image::Error> {
        let snapshot_err = |e: berth_snapshot::Error| berth_image::Error::Snapshot(e.to_string());
        let snapshots = Overlay::new(paths.snapshots()).map_err(snapshot_err)?;
        let interrupted = berth_image::pull::remove_interrupted_unpacks(&snapshots)?;
        if interrupted > 0 {
            tracing::info!(interrupted, "removed unpacks interrupted by a restart");
        }
        let orphans = snapshots.collect_orphans().map_err(snapshot_err)?;
        if orphans > 0 {
            tracing::info!(orphans, "removed snapshot directories without a record");
        }
        Ok(Self {
            index: Arc::new(ImageIndex::open(&paths)?),
            content: Arc::new(ContentStore::new(&paths)?),
            snapshots: Arc::new(snapshots),
            paths,
            pull_options,
            blob_locks: BlobLocks::default(),
            leases: Leases::new(),
            gc_lock: tokio::sync::Mutex::new(()),
            metrics,
        })
    }
}

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(&self, req: Request<v1::ListImagesRequest>) -> Result<Response<v1::ListImagesResponse>, Status> {
        Ok(Response::new(self.list(req.into_inner())))
    }

    async fn image_status(&self, req: Request<v1::ImageStatusRequest>) -> Result<Response<v1::ImageStatusResponse>, Status> {
        Ok(Response::new(self.status(req.into_inner())))
    }

    async fn pull_image(&self, req: Request<v1::PullImageRequest>) -> Result<Response<v1::PullImageResponse>, Status> {
        logged("PullImage", false, self.pull(req.into_inner()).await).map(Response::new)
    }

    async fn remove_image(&self, req: Request<v1::RemoveImageRequest>) -> Result<Response<v1::RemoveImageResponse>, Status> {
        logged("RemoveImage", false, self.remove(req.into_inner()).await).map(Response::new)
    }

    async fn image_fs_info(&self, req: Request<v1::ImageFsInfoRequest>) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        logged("ImageFsInfo", true, self.fs_info(req.into_inner()).await).map(Response::new)
    }
}

/// The CRI `Image` message for a record.
pub(crate) fn to_cri(r: &berth_image::index::ImageRecord) -> v1::Image {
    v1::Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid: r.uid.map(|value| v1::Int64Value { value }),
        username: r.username.clone(),
        spec: Some(v1::ImageSpec { image: r.id.clone(), ..Default::default() }),
        pinned: r.pinned,
    }
}

/// An image error as the caller gets it (through [`crate::error`]'s one
/// mapping of kinds to codes).
pub(crate) fn status_of(e: berth_image::Error) -> Status {
    crate::error::Error::caused(e).into()
}
