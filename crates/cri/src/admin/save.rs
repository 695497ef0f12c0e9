//! Images.Save: stored images as an OCI image layout tar or a `docker
//! save` archive, written on the blocking pool and streamed as it is
//! written (nothing is staged on disk).

use std::{io::Write, sync::Arc};

use berth_api::{
    admin::v1::{SaveChunk, SaveFormat, SaveRequest},
    chunks::ChunkWriter,
};
use berth_image::export::{ArchiveFormat, ToSave};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::SaveChunks;
use crate::{image::status_of, ImageServer};

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
        let mut sink = ChunkWriter::new(tx.clone(), |data| Ok(SaveChunk { data }), "the client stopped reading the archive");
        let written = berth_image::export::write_archive(&to_save, format, &images.content, &mut sink)
            .and_then(|()| sink.flush().map_err(|e| berth_image::Error::Io { op: "send", path: "the archive".into(), source: e }));
        if let Err(e) = written {
            tracing::warn!(error = %e, "save failed");
            let _ = tx.blocking_send(Err(status_of(e)));
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
