use std::collections::HashMap;

use k8s_cri::v1::{ImageStatusRequest, ImageStatusResponse};

use super::{to_cri, ImageServer};

impl ImageServer {
    /// Unknown images are not an error: the CRI answers with no image.
    pub(super) fn status(&self, req: ImageStatusRequest) -> ImageStatusResponse {
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let Some(record) = self.index.resolve(&name) else { return ImageStatusResponse::default() };
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("info".to_string(), serde_json::json!({ "chainIDs": record.chain_ids, "blobs": record.blobs }).to_string());
        }
        ImageStatusResponse { image: Some(to_cri(&record)), info }
    }
}
