use std::{os::unix::fs::MetadataExt, path::Path, time::SystemTime};

use k8s_cri::v1::{FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value};
use tonic::Status;

use super::ImageServer;

impl ImageServer {
    /// Bytes and inodes used by image layers (snapshots) and blobs
    /// (content), measured by walking the directories.
    pub(super) async fn fs_info(&self, _req: ImageFsInfoRequest) -> Result<ImageFsInfoResponse, Status> {
        let dirs = [self.paths.snapshots(), self.paths.root().join("content")];
        let usage = tokio::task::spawn_blocking(move || dirs.iter().map(|d| usage_of(d)).collect::<Vec<_>>())
            .await
            .map_err(|e| Status::internal(format!("fs usage task: {e}")))?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
        let to_cri = |path: &Path, (bytes, inodes): (u64, u64)| FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier { mountpoint: path.display().to_string() }),
            used_bytes: Some(UInt64Value { value: bytes }),
            inodes_used: Some(UInt64Value { value: inodes }),
        };
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![to_cri(&self.paths.snapshots(), usage[0]), to_cri(&self.paths.root().join("content"), usage[1])],
            container_filesystems: vec![],
        })
    }
}

/// (bytes in 512-byte blocks actually allocated, inodes) under `dir`,
/// counting hard links once per directory walk.
fn usage_of(dir: &Path) -> (u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if seen.insert((m.dev(), m.ino())) {
                bytes += m.blocks() * 512;
                inodes += 1;
            }
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}
