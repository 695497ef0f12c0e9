//! `berthctl images import FILE|DIR`: sends an OCI layout (a directory or
//! its tar) or a `docker save` archive (optionally gzipped) to berthd,
//! which needs no registry for it. A directory is tarred on the fly;
//! nothing is staged on disk.

use std::{fs::File, io::Write, path::Path};

use anyhow::Context;
use berth_api::admin::v1::{images_client::ImagesClient, ImportChunk};
use berth_api::chunks::ChunkWriter;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::{connect, rpc_error};

pub async fn import(socket: &Path, source: &Path, base_name: Option<String>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(source).with_context(|| format!("{}", source.display()))?;
    let mut client = ImagesClient::new(connect(socket).await?);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let path = source.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut sink = ChunkWriter::new(tx, |data| data, "berthd stopped reading the archive");
        if meta.is_dir() {
            let mut tar = tar::Builder::new(&mut sink);
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &path).with_context(|| format!("read {}", path.display()))?;
            tar.finish()?;
        } else {
            let mut file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
            std::io::copy(&mut file, &mut sink).with_context(|| format!("read {}", path.display()))?;
        }
        sink.flush()?;
        Ok(())
    });
    let mut first = true;
    let chunks = ReceiverStream::new(rx);
    let requests = tokio_stream::StreamExt::map(chunks, move |data| {
        let base = if std::mem::take(&mut first) { base_name.clone().unwrap_or_default() } else { String::new() };
        ImportChunk { base_name: base, data }
    });
    let result = client.import(requests).await;
    // A read error ends the stream early; say that, not berthd's view of it.
    reader.await??;
    let images = result.map_err(rpc_error("import"))?.into_inner().images;
    for image in images {
        println!("{} {}", image.image_id, image.repo_tags.join(" "));
    }
    Ok(())
}
