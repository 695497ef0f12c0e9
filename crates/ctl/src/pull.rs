//! `berthctl pull`: through berth's own Images.Pull, so each layer's
//! progress shows as it downloads and unpacks ([`ProgressView`]).

use std::path::Path;

use berth_api::admin::v1::{images_client::ImagesClient, pull_event::Event, PullRequest};

use crate::{
    client::{connect, rpc_error},
    progress::ProgressView,
};

pub async fn pull(socket: &Path, image: &str, creds: Option<&str>) -> anyhow::Result<()> {
    // Given, or stored by `berthctl login` (else berthd's own auth file).
    let (username, password) = match creds {
        Some(c) => c.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())).ok_or_else(|| anyhow::anyhow!("--creds must be user:password"))?,
        None => crate::credentials::for_image(image)?.unwrap_or_default(),
    };
    let mut client = ImagesClient::new(connect(socket).await?);
    let mut events = client.pull(PullRequest { image: image.into(), username, password }).await.map_err(rpc_error("pull"))?.into_inner();
    let mut view = ProgressView::new();
    while let Some(event) = events.message().await.map_err(rpc_error("pull"))? {
        match event.event {
            Some(Event::Layer(layer)) => view.update(layer),
            Some(Event::Pulled(pulled)) => {
                view.finish();
                println!("{}", pulled.image_id);
                return Ok(());
            }
            None => {}
        }
    }
    anyhow::bail!("pull: berthd ended the stream before the image was pulled")
}
