//! `berthctl save [-o FILE] [--format oci|docker] IMAGE...`: the images as
//! an OCI image layout tar or a `docker save` archive, written by berthd
//! (Images.Save) and streamed here: what `images import` loads back.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use berth_api::admin::v1::{images_client::ImagesClient, SaveFormat, SaveRequest};
use clap::{Args, ValueEnum};

use crate::{
    client::{connect, rpc_error},
    credentials,
};

#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "oci")]
    pub format: Format,
    /// Names or ids; a name saves the image under it, an id under all its names.
    #[arg(required = true, value_parser = credentials::image_arg)]
    pub images: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// An OCI image layout tar.
    Oci,
    /// A `docker save` archive (manifest.json).
    Docker,
}

pub async fn save(socket: &Path, args: SaveArgs) -> anyhow::Result<()> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!("refusing to write an archive to a terminal: give -o FILE or redirect stdout");
    }
    let format = match args.format {
        Format::Oci => SaveFormat::Oci,
        Format::Docker => SaveFormat::Docker,
    };
    let mut client = ImagesClient::new(connect(socket).await?);
    let mut chunks = client.save(SaveRequest { images: args.images, format: format as i32 }).await.map_err(rpc_error("save"))?.into_inner();
    let Some(output) = args.output else {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = chunks.message().await.map_err(rpc_error("save"))? {
            out.write_all(&chunk.data).context("write to stdout")?;
        }
        return out.flush().context("write to stdout");
    };
    // Written beside the file and renamed: a failed save leaves no half archive.
    let name = output.file_name().context("-o names no file")?.to_string_lossy().into_owned();
    let temp = output.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let written = async {
        let mut file = std::fs::File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
        while let Some(chunk) = chunks.message().await.map_err(rpc_error("save"))? {
            file.write_all(&chunk.data).with_context(|| format!("write {}", temp.display()))?;
        }
        file.sync_all()?;
        std::fs::rename(&temp, &output).with_context(|| format!("write {}", output.display()))
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}
