//! The blobs of a one-layer image, for registries the tests write
//! themselves (servers that misbehave on purpose).

use sha2::Digest;

/// A layer (any bytes: no registry client looks inside before the digest
/// checks), its config and its OCI manifest, with their digests.
pub struct OneLayerImage {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

impl OneLayerImage {
    /// An image of `layer` bytes produced by `n -> byte`: content whose
    /// digest nothing else shares, so a stored blob can only be the test's.
    pub fn new(layer_len: u32, shift: u32) -> Self {
        let layer: Vec<u8> = (0..layer_len).map(|i| (i.wrapping_mul(2_654_435_761) >> shift) as u8).collect();
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .unwrap();
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        }))
        .unwrap();
        Self { layer, layer_digest, config, config_digest, manifest }
    }
}
