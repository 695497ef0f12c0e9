use std::path::Path;

use clap::{Args, Subcommand};
use k8s_cri::v1::{image_service_client::ImageServiceClient, Image, ImageSpec, ListImagesRequest, RemoveImageRequest};

use crate::client::{connect, rpc_error};

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Pull an image from its registry (or a configured mirror).
    Pull(PullArgs),
    /// Remove images with all their tags; unused layers go too.
    #[command(alias = "remove")]
    Rm { images: Vec<String> },
    /// Remove every image no container uses.
    Prune,
    /// Load the images of an OCI image layout (directory or tar) or a
    /// `docker save` archive (tar or tar.gz), without any registry.
    Import {
        /// Repository for images the layout names by tag alone (e.g.
        /// `example.com/app` for `ref.name: 1.0`).
        #[arg(long)]
        base_name: Option<String>,
        source: std::path::PathBuf,
    },
}

#[derive(Args)]
pub struct PullArgs {
    pub image: String,
    /// Registry credentials, `user:password`.
    #[arg(long)]
    pub creds: Option<String>,
}

pub async fn run(socket: &Path, cmd: ImagesCommand) -> anyhow::Result<()> {
    let mut client = ImageServiceClient::new(connect(socket).await?);
    match cmd {
        ImagesCommand::Ls => {
            let images = client.list_images(ListImagesRequest::default()).await.map_err(rpc_error("list images"))?.into_inner().images;
            println!("{:<60} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            for image in images {
                for line in rows(&image) {
                    println!("{line}");
                }
            }
        }
        ImagesCommand::Pull(args) => crate::pull::pull(socket, &args.image, args.creds.as_deref()).await?,
        ImagesCommand::Import { base_name, source } => crate::import::import(socket, &source, base_name).await?,
        ImagesCommand::Prune => crate::prune::images(socket).await?,
        ImagesCommand::Rm { images } => {
            anyhow::ensure!(!images.is_empty(), "name at least one image");
            for image in images {
                client.remove_image(RemoveImageRequest { image: Some(spec(&image)) }).await.map_err(rpc_error("remove"))?;
                println!("removed {image}");
            }
        }
    }
    Ok(())
}

fn spec(image: &str) -> ImageSpec {
    ImageSpec { image: image.into(), ..Default::default() }
}

/// One row per tag (an untagged image gets one row with its digest).
fn rows(image: &Image) -> Vec<String> {
    let short_id = image.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    let size = format!("{:.1} MB", image.size as f64 / 1e6);
    let names: Vec<&String> = if image.repo_tags.is_empty() { image.repo_digests.iter().collect() } else { image.repo_tags.iter().collect() };
    names.iter().map(|n| format!("{n:<60} {short_id:<20} {size:>10}")).collect()
}

/// `berthctl tag SOURCE TARGET`, through berth's admin API (berthd owns
/// the index of names).
pub async fn tag(socket: &Path, source: &str, target: &str) -> anyhow::Result<()> {
    use berth_api::admin::v1::{images_client::ImagesClient, TagRequest};
    let mut client = ImagesClient::new(connect(socket).await?);
    client.tag(TagRequest { source: source.into(), target: target.into() }).await.map_err(rpc_error("tag"))?;
    Ok(())
}
