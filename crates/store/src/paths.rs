use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Every path berth uses, derived from two roots so tests run on temp dirs.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
    state: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), state: state.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state(&self) -> &Path {
        &self.state
    }

    pub fn sandbox_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.root.join("sandboxes").join(checked_id(id)?))
    }

    pub fn sandbox_record(&self, id: &str) -> Result<PathBuf> {
        Ok(self.sandbox_dir(id)?.join("sandbox.json"))
    }

    /// A pod's volatile state: pinned namespaces, its /dev/shm.
    pub fn sandbox_state(&self, id: &str) -> Result<PathBuf> {
        Ok(self.state.join("sandboxes").join(checked_id(id)?))
    }

    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.root.join("containers").join(checked_id(id)?))
    }

    pub fn container_record(&self, id: &str) -> Result<PathBuf> {
        Ok(self.container_dir(id)?.join("container.json"))
    }

    /// The OCI bundle of a container: volatile, rebuilt after a reboot.
    pub fn bundle(&self, id: &str) -> Result<PathBuf> {
        Ok(self.state.join("containers").join(checked_id(id)?))
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("content/blobs/sha256")
    }

    pub fn ingest(&self) -> PathBuf {
        self.root.join("content/ingest")
    }

    /// Image records (`<config digest hex>.json`): the image index.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots/overlayfs")
    }

    /// Directories whose record is gone, moved here by one rename to be
    /// deleted in the background (a container's thin layer and its
    /// directory): emptied again at start-up if berthd died first.
    pub fn trash(&self) -> PathBuf {
        self.root.join("trash")
    }

    pub fn cri_socket(&self) -> PathBuf {
        self.state.join("berth.sock")
    }

    /// A shim's socket: a hash of the id keeps it short and fixed-length
    /// whatever the id, well inside sun_path's 108 bytes.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let digest = Sha256::digest(id.as_bytes());
        self.state.join("s").join(&hex::encode(digest)[..32])
    }

    /// Where a shim takes attach clients: beside its Task API socket.
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.shim_socket(id).with_extension("attach")
    }
}

/// Ids become directory names: refuse anything that could escape or
/// collide (`..`, `/`, empty, absurdly long).
pub fn checked_id(id: &str) -> Result<&str> {
    let ok = !id.is_empty() && id.len() <= 128 && !id.starts_with('.') && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(id)
    } else {
        Err(Error::InvalidId(id.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_design() {
        let p = Paths::new("/var/lib/berth", "/run/berth");
        assert_eq!(p.container_record("c1").unwrap(), Path::new("/var/lib/berth/containers/c1/container.json"));
        assert_eq!(p.bundle("c1").unwrap(), Path::new("/run/berth/containers/c1"));
        assert_eq!(p.blobs(), Path::new("/var/lib/berth/content/blobs/sha256"));
        let sock = p.shim_socket(&"x".repeat(500));
        assert!(sock.as_os_str().len() < 108 && sock.starts_with("/run/berth/s"));
        assert_ne!(p.shim_socket("a"), p.shim_socket("b"));
    }

    #[test]
    fn ids_cannot_escape() {
        let p = Paths::new("/r", "/s");
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(p.container_dir(bad).is_err(), "{bad:?} accepted");
        }
        assert!(p.container_dir("3f2a-b_c.d").is_ok());
    }
}
