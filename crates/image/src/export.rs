//! Images out of the store: the manifest a stored image is pushed and
//! saved with, archives (an OCI image layout, or `docker save`'s format)
//! that `import` reads back as the same images, and the image config's
//! history.
//!
//! A pull keeps the config and layer blobs, not the registry's manifest,
//! so the manifest is written anew: OCI media types, each layer's type
//! from its first bytes (gzip, zstd or a plain tar). An image whose
//! manifest is in the store (an import keeps it) goes out with that
//! manifest, byte for byte.

use std::io::{Read, Write};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    content::ContentStore,
    error::{Error, Result},
    index::ImageRecord,
    pull::parse_reference,
};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob as a manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A stored image as it leaves the store.
#[derive(Debug, Clone)]
pub struct Exported {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Exported {
    /// Config and layer blobs, config first.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        std::iter::once(&self.config).chain(&self.layers)
    }
}

/// The manifest and blobs of a stored image.
pub fn exported(record: &ImageRecord, content: &ContentStore) -> Result<Exported> {
    let (config_digest, layer_digests) = record.blobs.split_first().ok_or_else(|| Error::BadImage(format!("{}: the record names no blobs", record.id)))?;
    let config = Descriptor { media_type: OCI_CONFIG.into(), digest: config_digest.clone(), size: blob_size(content, config_digest)? };
    let mut layers = Vec::new();
    for digest in layer_digests {
        layers.push(Descriptor { media_type: layer_media_type(content, digest)?.into(), digest: digest.clone(), size: blob_size(content, digest)? });
    }
    if let Some(kept) = kept_manifest(record, &layers, content) {
        return Ok(Exported { config, layers, manifest_digest: digest_of(&kept), manifest: kept });
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_json(&config),
        "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::BadImage(e.to_string()))?;
    Ok(Exported { config, layers, manifest_digest: digest_of(&manifest), manifest })
}

/// A manifest of the image's own in the store (an import keeps the one it
/// read), if it is an OCI image manifest of exactly this config and these
/// layers, their media types as their bytes say.
fn kept_manifest(record: &ImageRecord, layers: &[Descriptor], content: &ContentStore) -> Option<Vec<u8>> {
    record.repo_digests.iter().find_map(|name| {
        let digest = &name[name.rfind('@')? + 1..];
        let bytes = std::fs::read(content.blob_path(digest).ok()?).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let kept: Vec<(&str, &str)> =
            value["layers"].as_array()?.iter().map(|d| Some((d["digest"].as_str()?, d["mediaType"].as_str()?))).collect::<Option<_>>()?;
        let ours: Vec<(&str, &str)> = layers.iter().map(|l| (l.digest.as_str(), l.media_type.as_str())).collect();
        (value["mediaType"] == OCI_MANIFEST && value["config"]["digest"] == record.id.as_str() && kept == ours).then_some(bytes)
    })
}

fn descriptor_json(d: &Descriptor) -> Value {
    json!({ "mediaType": d.media_type, "digest": d.digest, "size": d.size })
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_size(content: &ContentStore, digest: &str) -> Result<u64> {
    let path = content.blob_path(digest)?;
    Ok(std::fs::metadata(&path).map_err(Error::io("stat", &path))?.len())
}

/// A layer's OCI media type, from its first bytes.
fn layer_media_type(content: &ContentStore, digest: &str) -> Result<&'static str> {
    let path = content.blob_path(digest)?;
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(&path).map_err(Error::io("open", &path))?;
    let n = file.read(&mut head).map_err(Error::io("read", &path))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    })
}

/// How `save` writes its archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout: `oci-layout`, `index.json` (each image named by
    /// `io.containerd.image.name` and `org.opencontainers.image.ref.name`),
    /// `blobs/sha256/<hex>`.
    Oci,
    /// `docker save`'s: `manifest.json` (`Config`, `RepoTags`, `Layers`)
    /// naming files under `blobs/sha256/`, as Docker 25+ lays them out.
    Docker,
}

/// An image to save and the names it goes under.
pub struct ToSave {
    pub record: ImageRecord,
    pub names: Vec<String>,
}

/// Writes `images` as one tar archive of `format` (each blob once).
pub fn write_archive(images: &[ToSave], format: ArchiveFormat, content: &ContentStore, out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let io = |e: std::io::Error| Error::Io { op: "write", path: "the archive".into(), source: e };
    let mut written = std::collections::HashSet::new();
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    for image in images {
        let exported = exported(&image.record, content)?;
        for blob in exported.blobs() {
            if written.insert(blob.digest.clone()) {
                let path = content.blob_path(&blob.digest)?;
                let mut file = std::fs::File::open(&path).map_err(Error::io("open", &path))?;
                let mut header = file_header(blob.size);
                tar.append_data(&mut header, blob_path(&blob.digest), &mut file).map_err(io)?;
            }
        }
        match format {
            ArchiveFormat::Oci => {
                if written.insert(exported.manifest_digest.clone()) {
                    let mut header = file_header(exported.manifest.len() as u64);
                    tar.append_data(&mut header, blob_path(&exported.manifest_digest), &exported.manifest[..]).map_err(io)?;
                }
                for name in &image.names {
                    let tag = parse_reference(name)?.tag().unwrap_or("latest").to_string();
                    index_entries.push(json!({
                        "mediaType": OCI_MANIFEST,
                        "digest": exported.manifest_digest,
                        "size": exported.manifest.len(),
                        "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag },
                    }));
                }
            }
            ArchiveFormat::Docker => docker_entries.push(json!({
                "Config": blob_path(&exported.config.digest),
                "RepoTags": image.names,
                "Layers": exported.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
            })),
        }
    }
    let mut small = |name: &str, value: &Value| -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::BadImage(e.to_string()))?;
        let mut header = file_header(bytes.len() as u64);
        tar.append_data(&mut header, name, &bytes[..]).map_err(io)
    };
    match format {
        ArchiveFormat::Oci => {
            small("oci-layout", &json!({ "imageLayoutVersion": "1.0.0" }))?;
            small("index.json", &json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries }))?;
        }
        ArchiveFormat::Docker => small("manifest.json", &Value::Array(docker_entries))?,
    }
    tar.into_inner().map_err(io)?.flush().map_err(io)
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// One step of an image's history, newest last (as the config has them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub created: String,
    pub created_by: String,
    pub comment: String,
    pub empty_layer: bool,
    /// The layer the step made (empty for an empty layer) and its size.
    pub layer: Option<Descriptor>,
}

/// The image config's `history`, each non-empty step paired with its
/// layer in order. A config without history (or with fewer steps than
/// layers) gets a bare step for each layer left.
pub fn history(record: &ImageRecord, content: &ContentStore) -> Result<Vec<Step>> {
    let exported = exported(record, content)?;
    let path = content.blob_path(&exported.config.digest)?;
    let config: Value =
        serde_json::from_slice(&std::fs::read(&path).map_err(Error::io("read", &path))?).map_err(|e| Error::BadImage(format!("config: {e}")))?;
    let mut layers = exported.layers.into_iter();
    let mut steps = Vec::new();
    for entry in config["history"].as_array().into_iter().flatten() {
        let text = |name: &str| entry[name].as_str().unwrap_or("").to_string();
        let empty_layer = entry["empty_layer"].as_bool().unwrap_or(false);
        let layer = if empty_layer { None } else { layers.next() };
        steps.push(Step { created: text("created"), created_by: text("created_by"), comment: text("comment"), empty_layer, layer });
    }
    for layer in layers {
        steps.push(Step { created: String::new(), created_by: String::new(), comment: String::new(), empty_layer: false, layer: Some(layer) });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::new(&berth_store::Paths::new(dir.path(), dir.path())).unwrap();
        (dir, content)
    }

    fn put(content: &ContentStore, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        content.ingest(&digest, Some(bytes.len() as u64), bytes).unwrap();
        digest
    }

    fn record(blobs: Vec<String>, repo_digests: Vec<String>) -> ImageRecord {
        ImageRecord {
            id: blobs[0].clone(),
            repo_tags: vec!["r.io/a:1".into()],
            repo_digests,
            chain_ids: vec![],
            blobs,
            size: 0,
            uid: None,
            username: String::new(),
            pinned: false,
        }
    }

    #[test]
    fn layers_are_typed_by_their_bytes_and_a_kept_manifest_is_reused() {
        let (_dir, content) = store();
        let config = put(&content, br#"{"rootfs": {"type": "layers", "diff_ids": []}}"#);
        let gzip = put(&content, &[0x1f, 0x8b, 8, 0, 1, 2]);
        let zstd = put(&content, &[0x28, 0xb5, 0x2f, 0xfd, 0]);
        let tar = put(&content, b"plain tar bytes");
        let image = exported(&record(vec![config.clone(), gzip.clone(), zstd, tar], vec![]), &content).unwrap();
        let types: Vec<&str> = image.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(
            types,
            ["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.layer.v1.tar"]
        );
        assert_eq!(image.manifest_digest, digest_of(&image.manifest));
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], config.as_str());
        assert_eq!(manifest["layers"][0]["size"], 6);

        // The image's own manifest, when stored and true to the blobs, goes
        // out as it is; one that misnames a layer's type does not.
        let kept = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config, "size": 46 },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": gzip, "size": 6 }],
        }))
        .unwrap();
        let kept_digest = put(&content, &kept);
        let with_kept = record(vec![config.clone(), gzip.clone()], vec![format!("r.io/a@{kept_digest}")]);
        assert_eq!(exported(&with_kept, &content).unwrap().manifest_digest, kept_digest);
        let wrong = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": { "digest": config },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": gzip, "size": 6 }],
        }))
        .unwrap();
        let wrong_digest = put(&content, &wrong);
        let with_wrong = record(vec![config, gzip], vec![format!("r.io/a@{wrong_digest}")]);
        assert_ne!(exported(&with_wrong, &content).unwrap().manifest_digest, wrong_digest);
    }

    #[test]
    fn history_pairs_steps_that_made_layers_with_the_layers() {
        let (_dir, content) = store();
        let config = put(
            &content,
            br#"{"history": [{"created_by": "ADD a", "created": "2024-01-01T00:00:00Z"}, {"created_by": "ENV x", "empty_layer": true}, {"created_by": "RUN b"}]}"#,
        );
        let (a, b, c) = (put(&content, b"layer a"), put(&content, b"layer bb"), put(&content, b"layer ccc"));
        let steps = history(&record(vec![config, a.clone(), b.clone(), c.clone()], vec![]), &content).unwrap();
        let summary: Vec<(&str, Option<&str>)> = steps.iter().map(|s| (s.created_by.as_str(), s.layer.as_ref().map(|l| l.digest.as_str()))).collect();
        assert_eq!(summary, [("ADD a", Some(a.as_str())), ("ENV x", None), ("RUN b", Some(b.as_str())), ("", Some(c.as_str()))]);
        assert_eq!(steps[0].created, "2024-01-01T00:00:00Z");
        assert_eq!(steps[2].layer.as_ref().unwrap().size, 8);
    }
}
