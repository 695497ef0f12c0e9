//! Importing images without a registry, for air-gapped nodes: an OCI image
//! layout (`index.json` + `blobs/`) or a `docker save` archive
//! (`manifest.json` + configs + layer tars), read as one tar stream,
//! optionally compressed.
//!
//! The stream is read once, front to back: every file lands in the content
//! store as it passes (layout blobs verified against the digest their path
//! names, other files hashed on the way in), and only the small JSON files
//! stay in memory. The image descriptions are read after the last entry,
//! since a tar may put them anywhere. Layers are then unpacked exactly as a
//! pull unpacks them, so an imported image is indistinguishable from a
//! pulled one.

use std::{
    collections::HashMap,
    io::Read,
    path::{Component, Path, PathBuf},
};

use berth_snapshot::Overlay;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    content::ContentStore,
    error::{Error, Result},
    lease::Lease,
    pull::{chain_ids, parse_config, parse_reference, unpack_layer, Pulled},
    unpack::decompress,
};

/// JSON files bigger than this are not image descriptions.
const MAX_DESCRIPTION: u64 = 4 << 20;

const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Full names in archives containerd (and Docker 25+) export.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Imports every image of the archive. `base_name` is the repository for
/// images an OCI layout names by tag alone (`ref.name: "1.0"`). `lease`
/// keeps what the import stores from garbage collection until the caller
/// has indexed the images and drops it.
pub fn import_archive(archive: impl Read, base_name: Option<&str>, content: &ContentStore, snapshots: &Overlay, lease: &Lease) -> Result<Vec<Pulled>> {
    let files = ArchiveFiles::read(archive, content, lease)?;
    let images = if let Some(manifest) = files.json("manifest.json")? {
        docker_images(&files, &manifest, content, lease)?
    } else if let Some(index) = files.json("index.json")? {
        oci_images(&index, base_name, content)?
    } else {
        return Err(Error::BadImage("the archive has neither index.json (OCI layout) nor manifest.json (docker save)".into()));
    };
    if images.is_empty() {
        return Err(Error::BadImage("the archive names no image".into()));
    }
    let mut pulled = Vec::new();
    for image in images {
        pulled.extend(image.unpack(content, snapshots, lease)?);
    }
    Ok(pulled)
}

/// What the tar stream held: descriptions in memory, everything else in
/// the content store by digest.
struct ArchiveFiles {
    small: HashMap<PathBuf, Vec<u8>>,
    stored: HashMap<PathBuf, String>,
    links: HashMap<PathBuf, PathBuf>,
}

impl ArchiveFiles {
    fn read(archive: impl Read, content: &ContentStore, lease: &Lease) -> Result<Self> {
        let mut files = Self { small: HashMap::new(), stored: HashMap::new(), links: HashMap::new() };
        let mut tar = tar::Archive::new(decompress(archive)?);
        for entry in tar.entries().map_err(Error::Read)? {
            let mut entry = entry.map_err(Error::Read)?;
            let path = normalise(&entry.path().map_err(Error::Read)?)?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                // `docker save` links a layer tar another image shares.
                let target = entry.link_name().map_err(Error::Read)?.ok_or_else(|| Error::BadImage(format!("{}: link without target", path.display())))?;
                let target = if kind.is_symlink() { path.parent().unwrap_or(Path::new("")).join(target) } else { target.into_owned() };
                files.links.insert(path, normalise(&target)?);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            if let Some(digest) = layout_blob_digest(&path) {
                // A pull's partial download of this blob goes on from
                // where it stopped: skip what it already has.
                lease.hold(&digest);
                let offset = content.ingest_offset(&digest)?;
                std::io::copy(&mut (&mut entry).take(offset), &mut std::io::sink()).map_err(Error::Read)?;
                content.ingest(&digest, Some(entry.size()), &mut entry)?;
                files.stored.insert(path, digest);
            } else if entry.size() <= MAX_DESCRIPTION && is_description(&path) {
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut bytes).map_err(Error::Read)?;
                files.small.insert(path, bytes);
            } else {
                let (digest, _) = content.ingest_unnamed(&mut entry, lease)?;
                files.stored.insert(path, digest);
            }
        }
        Ok(files)
    }

    /// Follows links (a few hops at most) to the file itself.
    fn resolve<'a>(&'a self, mut path: &'a Path) -> &'a Path {
        for _ in 0..8 {
            match self.links.get(path) {
                Some(next) => path = next,
                None => break,
            }
        }
        path
    }

    fn json(&self, name: &str) -> Result<Option<Value>> {
        match self.small.get(Path::new(name)) {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(bytes).map(Some).map_err(|e| Error::BadImage(format!("{name}: {e}"))),
        }
    }

    /// A file's bytes, wherever the stream put it.
    fn bytes(&self, name: &str, content: &ContentStore) -> Result<Vec<u8>> {
        let path = normalise(Path::new(name))?;
        let path = self.resolve(&path);
        if let Some(b) = self.small.get(path) {
            return Ok(b.clone());
        }
        let digest = self.stored.get(path).ok_or_else(|| Error::BadImage(format!("the archive has no file {name}")))?;
        let blob = content.blob_path(digest)?;
        std::fs::read(&blob).map_err(Error::io("read", &blob))
    }

    /// The digest of a file stored as a blob (a layer).
    fn digest(&self, name: &str, content: &ContentStore, lease: &Lease) -> Result<String> {
        let path = normalise(Path::new(name))?;
        let path = self.resolve(&path);
        if let Some(d) = self.stored.get(path) {
            return Ok(d.clone());
        }
        // Small enough to be held as a description, but named as a layer.
        let bytes = self.small.get(path).ok_or_else(|| Error::BadImage(format!("the archive has no file {name}")))?;
        Ok(content.ingest_unnamed(&bytes[..], lease)?.0)
    }
}

/// One image found in the archive, with the names it is to be known by.
struct FoundImage {
    names: Vec<String>,
    manifest_digest: String,
    config_digest: String,
    config: String,
    layers: Vec<(String, u64)>,
}

impl FoundImage {
    fn unpack(self, content: &ContentStore, snapshots: &Overlay, lease: &Lease) -> Result<Vec<Pulled>> {
        let (diff_ids, user) = parse_config(&self.config)?;
        if diff_ids.len() != self.layers.len() {
            return Err(Error::BadImage(format!("{}: {} layers but {} diff_ids", self.config_digest, self.layers.len(), diff_ids.len())));
        }
        let chains = chain_ids(&diff_ids);
        lease.hold_all(&chains);
        for (i, (digest, _)) in self.layers.iter().enumerate() {
            let parent = i.checked_sub(1).map(|p| chains[p].as_str());
            unpack_layer(content, snapshots, digest, &chains[i], parent)?;
        }
        let size = self.layers.iter().map(|(_, s)| s).sum::<u64>() + self.config.len() as u64;
        let mut blobs = vec![self.config_digest.clone()];
        blobs.extend(self.layers.iter().map(|(d, _)| d.clone()));
        Ok(self
            .names
            .iter()
            .map(|name| Pulled {
                reference: name.clone(),
                manifest_digest: self.manifest_digest.clone(),
                config_digest: self.config_digest.clone(),
                chain_ids: chains.clone(),
                blobs: blobs.clone(),
                user: user.clone(),
                size,
                // An import downloads nothing from a registry.
                downloaded_bytes: 0,
            })
            .collect())
    }
}

/// `manifest.json` of `docker save`: configs and layer tars by path, names
/// in `RepoTags`. The archive has no manifest blob, so one is written (an
/// OCI manifest of those blobs) to give the image a repo digest.
fn docker_images(files: &ArchiveFiles, manifest: &Value, content: &ContentStore, lease: &Lease) -> Result<Vec<FoundImage>> {
    let entries = manifest.as_array().ok_or_else(|| Error::BadImage("manifest.json is not a list".into()))?;
    let mut images = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = |name: &str| Error::BadImage(format!("manifest.json[{i}].{name} is missing"));
        let config_path = entry["Config"].as_str().ok_or_else(|| field("Config"))?;
        let config = files.bytes(config_path, content)?;
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
        lease.hold(&config_digest);
        content.ingest(&config_digest, Some(config.len() as u64), &config[..])?;
        let mut layers = Vec::new();
        for layer in entry["Layers"].as_array().ok_or_else(|| field("Layers"))? {
            let path = layer.as_str().ok_or_else(|| field("Layers"))?;
            let digest = files.digest(path, content, lease)?;
            let blob = content.blob_path(&digest)?;
            let size = std::fs::metadata(&blob).map_err(Error::io("stat", &blob))?.len();
            layers.push((digest, size));
        }
        let names: Vec<String> = entry["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
        if names.is_empty() {
            return Err(Error::BadImage(format!("manifest.json[{i}] has no RepoTags: an image needs a name to be imported")));
        }
        let written = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": layers.iter().map(|(d, s)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
            })).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&written).map_err(|e| Error::BadImage(e.to_string()))?;
        let (manifest_digest, _) = content.ingest_unnamed(&bytes[..], lease)?;
        let config = String::from_utf8(config).map_err(|_| Error::BadImage(format!("{config_path} is not UTF-8")))?;
        images.push(FoundImage { names: checked_names(names)?, manifest_digest, config_digest, config, layers });
    }
    Ok(images)
}

/// `index.json` of an OCI layout: manifests (or indexes, resolved to this
/// node's platform) named by annotation.
fn oci_images(index: &Value, base_name: Option<&str>, content: &ContentStore) -> Result<Vec<FoundImage>> {
    let mut images = Vec::new();
    for (i, descriptor) in index["manifests"].as_array().into_iter().flatten().enumerate() {
        let annotations = &descriptor["annotations"];
        let name = match (annotations[CONTAINERD_NAME].as_str(), annotations[OCI_REF_NAME].as_str()) {
            (Some(full), _) => full.to_string(),
            (None, Some(tag)) if is_bare_tag(tag) => match base_name {
                Some(base) => format!("{base}:{tag}"),
                None => {
                    return Err(Error::BadImage(format!(
                        "index.json manifests[{i}] is named by tag alone ({tag:?}); give the repository it belongs to (berthctl images import --base-name)"
                    )))
                }
            },
            (None, Some(reference)) => reference.to_string(),
            (None, None) => return Err(Error::BadImage(format!("index.json manifests[{i}] has no name annotation ({OCI_REF_NAME})"))),
        };
        let digest = descriptor["digest"].as_str().ok_or_else(|| Error::BadImage(format!("index.json manifests[{i}].digest is missing")))?;
        let manifest_digest = platform_manifest(digest, content)?;
        let manifest = blob_json(&manifest_digest, content)?;
        let config_digest = manifest["config"]["digest"].as_str().ok_or_else(|| Error::BadImage(format!("{manifest_digest}: no config digest")))?.to_string();
        let config = String::from_utf8(read_blob(&config_digest, content)?).map_err(|_| Error::BadImage(format!("{config_digest} is not UTF-8")))?;
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let d = layer["digest"].as_str().ok_or_else(|| Error::BadImage(format!("{manifest_digest}: a layer has no digest")))?;
            if !content.has(d) {
                return Err(Error::BadImage(format!("{manifest_digest}: layer {d} is not in the archive")));
            }
            layers.push((d.to_string(), layer["size"].as_u64().unwrap_or(0)));
        }
        images.push(FoundImage { names: checked_names(vec![name])?, manifest_digest, config_digest, config, layers });
    }
    Ok(images)
}

/// Follows an index (multi-arch) down to the manifest for this node.
fn platform_manifest(digest: &str, content: &ContentStore) -> Result<String> {
    let mut digest = digest.to_string();
    for _ in 0..4 {
        let value = blob_json(&digest, content)?;
        let Some(manifests) = value["manifests"].as_array() else { return Ok(digest) };
        let (os, arch) = ("linux", go_arch());
        digest = manifests
            .iter()
            .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
            .and_then(|m| m["digest"].as_str())
            .ok_or_else(|| Error::BadImage(format!("{digest}: no manifest for {os}/{arch}")))?
            .to_string();
    }
    Err(Error::BadImage(format!("{digest}: indexes nested too deep")))
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_blob(digest: &str, content: &ContentStore) -> Result<Vec<u8>> {
    let path = content.blob_path(digest)?;
    match std::fs::read(&path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BadImage(format!("blob {digest} is not in the archive"))),
        Err(e) => Err(Error::Io { op: "read", path, source: e }),
    }
}

fn blob_json(digest: &str, content: &ContentStore) -> Result<Value> {
    serde_json::from_slice(&read_blob(digest, content)?).map_err(|e| Error::BadImage(format!("{digest}: {e}")))
}

/// Every name must be a reference the index can record.
fn checked_names(names: Vec<String>) -> Result<Vec<String>> {
    names.into_iter().map(|n| parse_reference(&n).map(|r| r.whole())).collect()
}

/// `1.0`, `latest`: a tag, not a reference (no repository in it).
fn is_bare_tag(name: &str) -> bool {
    !name.contains(['/', ':', '@'])
}

/// `blobs/sha256/<hex>` of an OCI layout: its digest.
fn layout_blob_digest(path: &Path) -> Option<String> {
    let mut parts = path.components().map(|c| c.as_os_str().to_str());
    match (parts.next()?, parts.next()?, parts.next()?, parts.next()) {
        (Some("blobs"), Some(algorithm), Some(hex), None) if algorithm == "sha256" && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(format!("sha256:{hex}"))
        }
        _ => None,
    }
}

/// Files read as descriptions rather than stored as blobs.
fn is_description(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json") || path == Path::new("oci-layout") || path == Path::new("repositories")
}

/// An entry path without `./` or a leading `/`; `..` that climbs out of
/// the archive is refused.
fn normalise(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir if !out.pop() => {
                return Err(Error::Escape { path: path.into(), reason: "'..' climbs out of the archive".into() });
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_blob_paths_name_their_digest() {
        let hex = "a".repeat(64);
        assert_eq!(layout_blob_digest(Path::new(&format!("blobs/sha256/{hex}"))), Some(format!("sha256:{hex}")));
        assert_eq!(layout_blob_digest(Path::new("blobs/sha256/short")), None);
        assert_eq!(layout_blob_digest(Path::new(&format!("x/blobs/sha256/{hex}"))), None);
    }

    #[test]
    fn names_by_tag_alone_are_told_apart_from_references() {
        assert!(is_bare_tag("1.0") && is_bare_tag("latest"));
        assert!(!is_bare_tag("busybox:1.0") && !is_bare_tag("example.com/app") && !is_bare_tag("app@sha256:00"));
    }

    /// `docker save` (before Docker 25) stores a layer two images share
    /// once and links the other image's `layer.tar` to it.
    #[test]
    fn a_linked_layer_tar_resolves_to_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::new(&berth_store::Paths::new(dir.path().join("root"), dir.path().join("state"))).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let data = b"pretend this is a layer tarball";
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "aaa/layer.tar", &data[..]).unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        tar.append_link(&mut link, "bbb/layer.tar", "../aaa/layer.tar").unwrap();
        let bytes = tar.into_inner().unwrap();
        let lease = crate::lease::Leases::new().lease();
        let files = ArchiveFiles::read(&bytes[..], &content, &lease).unwrap();
        let stored = files.digest("aaa/layer.tar", &content, &lease).unwrap();
        assert_eq!(files.digest("./bbb/layer.tar", &content, &lease).unwrap(), stored);
        assert_eq!(stored, format!("sha256:{}", hex::encode(Sha256::digest(data))));
        assert!(files.digest("ccc/layer.tar", &content, &lease).is_err());
    }

    #[test]
    fn entry_paths_normalise_and_may_not_escape() {
        assert_eq!(normalise(Path::new("./a/../b/layer.tar")).unwrap(), PathBuf::from("b/layer.tar"));
        assert!(normalise(Path::new("../etc/passwd")).is_err());
    }
}
