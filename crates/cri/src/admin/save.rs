//! Images.Save: stored images as an OCI image layout tar or a `docker
//! save` archive, written on the blocking pool and streamed as it is
//! written (nothing is staged on disk).

use std::{io::Write, sync::Arc};

use berth_api::admin::v1::{SaveChunk, SaveFormat, SaveRequest};
use berth_image::export::{ArchiveFormat, ToSave};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::SaveChunks;
use crate::{image::status_of, ImageServer};

const CHUNK: usize = 1 << 20;

pub(super) fn save(images: Arc<ImageServer>, req: SaveRequest) -> Result<SaveChunks, Status> {
    if req.images.is_empty() {
        return Err(Status::invalid_argument("images is empty: name at least one"));
    }
    let format = match req.format() {
        SaveFormat::Oci => ArchiveFormat::Oci,
        SaveFormat::Docker => ArchiveFormat::Docker,
    };
    // Every name is checked before a byte is sent.
    let mut to_save: Vec<ToSave> = Vec::new();
    for name in &req.images {
        let record = images.index.resolve(name).ok_or_else(|| status_of(berth_image::Error::UnknownImage(name.clone())))?;
        let by_id = *name == record.id || format!("sha256:{name}") == record.id;
        let names = if by_id {
            record.repo_tags.clone()
        } else {
            let r = berth_image::pull::parse_reference(name).map_err(status_of)?;
            vec![format!("{}/{}:{}", r.registry(), r.repository(), r.tag().unwrap_or("latest"))]
        };
        if names.is_empty() {
            return Err(Status::failed_precondition(format!("{name}: the image has no name to be saved under; tag it first")));
        }
        match to_save.iter_mut().find(|s| s.record.id == record.id) {
            Some(same) => {
                for n in names {
                    if !same.names.contains(&n) {
                        same.names.push(n);
                    }
                }
            }
            None => to_save.push(ToSave { record, names }),
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SaveChunk, Status>>(8);
    let lease = images.leases.lease();
    for image in &to_save {
        lease.hold_all(&image.record.blobs);
    }
    tokio::task::spawn_blocking(move || {
        let _lease = lease;
        let mut sink = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        let written = berth_image::export::write_archive(&to_save, format, &images.content, &mut sink)
            .and_then(|()| sink.flush().map_err(|e| berth_image::Error::Io { op: "send", path: "the archive".into(), source: e }));
        if let Err(e) = written {
            tracing::warn!(error = %e, "save failed");
            let _ = tx.blocking_send(Err(status_of(e)));
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The archive's bytes, sent as 1 MiB chunks.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<SaveChunk, Status>>,
    buf: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(SaveChunk { data })).map_err(|_| std::io::Error::other("the client stopped reading the archive"))
    }
}
