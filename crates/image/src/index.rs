//! The image index: which images exist, under which names. One record per
//! image id (config digest), so a tag moved to a new image is one rewrite,
//! and the index survives restarts by reloading the records.

use std::{collections::HashMap, path::PathBuf, sync::RwLock};

use berth_store::{load_record, save_record, Versioned};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    pull::{parse_reference, Pulled},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Config digest: the id every CRI answer uses.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub chain_ids: Vec<String>,
    /// Config and compressed layer blobs, for garbage collection.
    pub blobs: Vec<String>,
    pub size: u64,
    /// `User` of the image config, split into uid or username.
    pub uid: Option<i64>,
    pub username: String,
    #[serde(default)]
    pub pinned: bool,
}

impl Versioned for ImageRecord {
    const VERSION: u32 = 1;
}

pub struct ImageIndex {
    dir: PathBuf,
    images: RwLock<HashMap<String, ImageRecord>>,
}

impl ImageIndex {
    pub fn open(paths: &berth_store::Paths) -> Result<Self> {
        let dir = paths.images();
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        berth_store::remove_stale_temps(&dir).map_err(|e| Error::BadImage(e.to_string()))?;
        let mut images = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let path = entry.map_err(Error::io("read", &dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let r: ImageRecord = load_record(&path).map_err(|e| Error::BadImage(e.to_string()))?;
                images.insert(r.id.clone(), r);
            }
        }
        Ok(Self { dir, images: RwLock::new(images) })
    }

    /// Records a pulled image under its reference. The tag (or digest
    /// reference) leaves whichever image held it before.
    pub fn add(&self, pulled: &Pulled) -> Result<ImageRecord> {
        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        let reference = parse_reference(&pulled.reference)?;
        let repo = format!("{}/{}", reference.registry(), reference.repository());
        let repo_digest = format!("{repo}@{}", pulled.manifest_digest);
        let tag = reference.tag().map(|t| format!("{repo}:{t}"));
        for other in images.values_mut().filter(|i| i.id != pulled.config_digest) {
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| Some(t) != tag.as_ref());
            if other.repo_tags.len() != before {
                save_record(&self.path_of(&other.id)?, other).map_err(|e| Error::BadImage(e.to_string()))?;
            }
        }
        let (uid, username) = split_user(&pulled.user);
        let record = images.entry(pulled.config_digest.clone()).or_insert_with(|| ImageRecord {
            id: pulled.config_digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            chain_ids: pulled.chain_ids.clone(),
            blobs: pulled.blobs.clone(),
            size: pulled.size,
            uid,
            username,
            pinned: false,
        });
        if let Some(t) = tag {
            if !record.repo_tags.contains(&t) {
                record.repo_tags.push(t);
            }
        }
        if !record.repo_digests.contains(&repo_digest) {
            record.repo_digests.push(repo_digest);
        }
        save_record(&self.path_of(&record.id)?, record).map_err(|e| Error::BadImage(e.to_string()))?;
        Ok(record.clone())
    }

    /// Gives the image `source` names (an id, tag or digest reference) the
    /// name `target` too; the name leaves whichever image held it.
    pub fn tag(&self, source: &str, target: &str) -> Result<(ImageRecord, String)> {
        let reference = parse_reference(target)?;
        if reference.digest().is_some() {
            return Err(Error::InvalidReference { reference: target.into(), reason: "a tag names no digest".into() });
        }
        let id = self.resolve(source).ok_or_else(|| Error::UnknownImage(source.into()))?.id;
        let tag = format!("{}/{}:{}", reference.registry(), reference.repository(), reference.tag().unwrap_or("latest"));
        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        for other in images.values_mut().filter(|i| i.id != id) {
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| t != &tag);
            if other.repo_tags.len() != before {
                save_record(&self.path_of(&other.id)?, other).map_err(|e| Error::BadImage(e.to_string()))?;
            }
        }
        // Removed since it was resolved: a concurrent removal wins.
        let record = images.get_mut(&id).ok_or_else(|| Error::UnknownImage(source.into()))?;
        if !record.repo_tags.contains(&tag) {
            record.repo_tags.push(tag.clone());
            save_record(&self.path_of(&record.id)?, record).map_err(|e| Error::BadImage(e.to_string()))?;
        }
        Ok((record.clone(), tag))
    }

    /// Finds an image by id (`sha256:...`, or its hex), tag or digest
    /// reference, as the kubelet may name it.
    pub fn resolve(&self, name: &str) -> Option<ImageRecord> {
        let images = self.images.read().unwrap_or_else(|e| e.into_inner());
        let as_id = if name.starts_with("sha256:") { name.to_string() } else { format!("sha256:{name}") };
        if let Some(r) = images.get(&as_id) {
            return Some(r.clone());
        }
        let normalized = parse_reference(name).ok()?;
        let repo = format!("{}/{}", normalized.registry(), normalized.repository());
        let wanted_digest = normalized.digest().map(|d| format!("{repo}@{d}"));
        let wanted_tag = normalized.tag().map(|t| format!("{repo}:{t}"));
        images
            .values()
            .find(|i| {
                wanted_digest.as_ref().is_some_and(|d| i.repo_digests.contains(d))
                    || (wanted_digest.is_none() && wanted_tag.as_ref().is_some_and(|t| i.repo_tags.contains(t)))
            })
            .cloned()
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let mut v: Vec<ImageRecord> = self.images.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Removes the image with all its names. Missing is not an error.
    pub fn remove(&self, id: &str) -> Result<Option<ImageRecord>> {
        let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
        let removed = images.remove(id);
        if removed.is_some() {
            let path = self.path_of(id)?;
            std::fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        Ok(removed)
    }

    fn path_of(&self, id: &str) -> Result<PathBuf> {
        let hex = id.strip_prefix("sha256:").filter(|h| h.len() == 64).ok_or_else(|| Error::InvalidDigest(id.into()))?;
        Ok(self.dir.join(format!("{hex}.json")))
    }
}

/// `User` of an image config: a number is a uid (`1000`, `1000:1000`),
/// anything else a username the runtime resolves in the image.
fn split_user(user: &str) -> (Option<i64>, String) {
    let first = user.split(':').next().unwrap_or("");
    match first.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) if first.is_empty() => (None, String::new()),
        Err(_) => (None, first.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(reference: &str, id_char: char) -> Pulled {
        Pulled {
            reference: parse_reference(reference).unwrap().whole(),
            manifest_digest: format!("sha256:{}", "e".repeat(64)),
            config_digest: format!("sha256:{}", id_char.to_string().repeat(64)),
            chain_ids: vec![],
            blobs: vec![],
            user: String::new(),
            size: 1,
            downloaded_bytes: 0,
        }
    }

    #[test]
    fn names_resolve_and_a_tag_moves_to_the_newer_image() {
        let dir = tempfile::tempdir().unwrap();
        let paths = berth_store::Paths::new(dir.path(), dir.path());
        let index = ImageIndex::open(&paths).unwrap();
        let a = index.add(&Pulled { user: "1000:1000".into(), ..pulled("busybox", 'a') }).unwrap();
        assert_eq!(a.repo_tags, ["docker.io/library/busybox:latest"]);
        assert_eq!((a.uid, a.username.as_str()), (Some(1000), ""));
        for name in ["busybox", "busybox:latest", "docker.io/library/busybox", &a.id, &a.id[7..]] {
            assert_eq!(index.resolve(name).map(|r| r.id), Some(a.id.clone()), "{name}");
        }
        let b = index.add(&Pulled { user: "nobody".into(), ..pulled("busybox:latest", 'b') }).unwrap();
        assert_eq!(b.username, "nobody");
        assert_eq!(index.resolve("busybox").unwrap().id, b.id);
        assert!(index.resolve(&a.id).unwrap().repo_tags.is_empty(), "the tag left the old image");
        // Survives a reopen.
        let reopened = ImageIndex::open(&paths).unwrap();
        assert_eq!(reopened.list().len(), 2);
        assert_eq!(reopened.resolve("busybox").unwrap().id, b.id);
        assert!(reopened.remove(&b.id).unwrap().is_some());
        assert!(reopened.remove(&b.id).unwrap().is_none());
        assert!(reopened.resolve("busybox").is_none());
    }

    #[test]
    fn a_tag_is_one_more_name_and_leaves_its_old_image() {
        let dir = tempfile::tempdir().unwrap();
        let index = ImageIndex::open(&berth_store::Paths::new(dir.path(), dir.path())).unwrap();
        let a = index.add(&pulled("r.io/a:1", 'a')).unwrap();
        let b = index.add(&pulled("r.io/b:1", 'b')).unwrap();
        let (tagged, name) = index.tag("r.io/a:1", "r.io/c").unwrap();
        assert_eq!((tagged.id.as_str(), name.as_str()), (a.id.as_str(), "r.io/c:latest"));
        assert_eq!(index.resolve("r.io/c:latest").unwrap().repo_tags, ["r.io/a:1", "r.io/c:latest"]);
        index.tag(&b.id, "r.io/c").unwrap();
        assert_eq!(index.resolve("r.io/c").unwrap().id, b.id);
        assert_eq!(index.resolve(&a.id).unwrap().repo_tags, ["r.io/a:1"]);
        assert!(matches!(index.tag("r.io/nothing:1", "r.io/d").unwrap_err(), Error::UnknownImage(_)));
        assert!(matches!(index.tag(&a.id, "Bad Name").unwrap_err(), Error::InvalidReference { .. }));
    }
}
