use k8s_cri::v1::{VersionRequest, VersionResponse};

/// The CRI API version berthd speaks (kubelet checks the major version).
pub const CRI_API_VERSION: &str = "v1";
pub const RUNTIME_NAME: &str = "berth";

pub fn version(_req: VersionRequest) -> VersionResponse {
    VersionResponse {
        version: "0.1.0".into(),
        runtime_name: RUNTIME_NAME.into(),
        runtime_version: env!("CARGO_PKG_VERSION").into(),
        runtime_api_version: CRI_API_VERSION.into(),
    }
}
