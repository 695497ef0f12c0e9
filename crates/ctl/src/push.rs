//! `berthctl push IMAGE`: berthd sends the stored image to the registry
//! its name points at (Images.Push), each layer's upload shown as a pull's
//! download is. Credentials: those `berthctl login` stored for the
//! registry, else berthd's own `registry.auth_file`.

use std::path::Path;

use berth_api::admin::v1::{images_client::ImagesClient, push_event::Event, PushRequest};

use crate::{client::connect, credentials, progress::ProgressView};

pub async fn push(socket: &Path, image: &str) -> anyhow::Result<()> {
    let (username, password) = credentials::for_image(image)?.unwrap_or_default();
    let mut client = ImagesClient::new(connect(socket).await?);
    let mut events = client.push(PushRequest { image: image.into(), username, password }).await.map_err(push_error(image))?.into_inner();
    let mut view = ProgressView::new();
    while let Some(event) = events.message().await.map_err(push_error(image))? {
        match event.event {
            Some(Event::Layer(layer)) => view.update(layer),
            Some(Event::Pushed(pushed)) => {
                view.finish();
                println!("{}: digest: {} size: {}", pushed.reference, pushed.manifest_digest, pushed.size);
                return Ok(());
            }
            None => {}
        }
    }
    anyhow::bail!("push: berthd ended the stream before the image was pushed")
}

/// berthd's refusal, with where to act when it is about credentials.
fn push_error(image: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error + '_ {
    move |s| {
        let hint = match s.code() {
            tonic::Code::Unauthenticated => {
                let registry = berth_image::reference::parse(image).map(|r| r.registry().to_string()).unwrap_or_default();
                format!("; log in first: berthctl login {registry}")
            }
            _ => String::new(),
        };
        anyhow::anyhow!("{} ({:?}){hint}", s.message(), s.code())
    }
}
