//! Images.Login: are these credentials good for this registry? berthd
//! asks (its TLS settings and certs.d are the ones pulls use); berthctl
//! stores them if so.

use berth_api::admin::v1::{LoginRequest, LoginResponse};
use tonic::Status;

use crate::{image::status_of, ImageServer};

pub(super) async fn login(images: &ImageServer, req: LoginRequest) -> Result<LoginResponse, Status> {
    if req.registry.is_empty() || req.username.is_empty() {
        return Err(Status::invalid_argument("registry and username must both be given"));
    }
    berth_image::push::check_credentials(&req.registry, &req.username, &req.password, &images.pull_options).await.map_err(status_of)?;
    tracing::info!(registry = %req.registry, "credentials accepted");
    Ok(LoginResponse {})
}
