//! Images.Import: an archive streamed in chunks, imported on the blocking
//! pool as it arrives (no copy of the archive is kept), then recorded.

use std::{io::Read, sync::Arc};

use berth_api::admin::v1::{ImportChunk, ImportResponse, ImportedImage};
use tonic::{Status, Streaming};

use crate::{image::status_of, ImageServer};

pub(super) async fn import(images: &ImageServer, mut stream: Streaming<ImportChunk>) -> Result<ImportResponse, Status> {
    let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("the import stream is empty"))?;
    let base_name = Some(first.base_name.clone()).filter(|b| !b.is_empty());
    if let Some(base) = &base_name {
        berth_image::pull::parse_reference(base).map_err(|e| Status::invalid_argument(format!("base_name: {e}")))?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(16);
    let (content, snapshots) = (images.content.clone(), images.snapshots.clone());
    let started = std::time::Instant::now();
    // Held until every image is indexed (the end of this function), so a
    // concurrent garbage collection keeps what the import stored.
    let lease = Arc::new(images.leases.lease());
    let importer_lease = lease.clone();
    let worker = tokio::task::spawn_blocking(move || {
        berth_image::import::import_archive(ChunkReader { rx, chunk: Vec::new(), at: 0 }, base_name.as_deref(), &content, &snapshots, &importer_lease)
    });
    let mut next = Some(first);
    while let Some(chunk) = next.take() {
        if tx.send(Ok(chunk.data)).await.is_err() {
            break; // the import stopped early; its result says why
        }
        match stream.message().await {
            Ok(more) => next = more,
            Err(status) => {
                let _ = tx.send(Err(std::io::Error::other(format!("the client's stream broke: {}", status.message())))).await;
            }
        }
    }
    drop(tx);
    let pulled = worker.await.map_err(|e| Status::internal(format!("import task: {e}")))?.map_err(status_of)?;
    let mut imported: Vec<ImportedImage> = Vec::new();
    for p in &pulled {
        let record = images.index.add(p).map_err(status_of)?;
        tracing::info!(image = %p.reference, digest = %record.id, elapsed_ms = started.elapsed().as_millis() as u64, "imported");
        imported.retain(|i| i.image_id != record.id);
        imported.push(ImportedImage { image_id: record.id, repo_tags: record.repo_tags });
    }
    Ok(ImportResponse { images: imported })
}

/// The client's chunks as one byte stream, for the blocking importer.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => (self.chunk, self.at) = (chunk?, 0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
