//! ImageService. Nothing is served yet: every RPC names itself as missing.

use k8s_cri::v1::{self, image_service_server::ImageService};
use tonic::{Request, Response, Status};

use crate::not_yet;

#[derive(Default)]
pub struct ImageServer;

#[tonic::async_trait]
impl ImageService for ImageServer {
    async fn list_images(&self, _: Request<v1::ListImagesRequest>) -> Result<Response<v1::ListImagesResponse>, Status> {
        Err(not_yet("ListImages"))
    }

    async fn image_status(&self, _: Request<v1::ImageStatusRequest>) -> Result<Response<v1::ImageStatusResponse>, Status> {
        Err(not_yet("ImageStatus"))
    }

    async fn pull_image(&self, _: Request<v1::PullImageRequest>) -> Result<Response<v1::PullImageResponse>, Status> {
        Err(not_yet("PullImage"))
    }

    async fn remove_image(&self, _: Request<v1::RemoveImageRequest>) -> Result<Response<v1::RemoveImageResponse>, Status> {
        Err(not_yet("RemoveImage"))
    }

    async fn image_fs_info(&self, _: Request<v1::ImageFsInfoRequest>) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        Err(not_yet("ImageFsInfo"))
    }
}
