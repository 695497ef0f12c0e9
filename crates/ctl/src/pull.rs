//! `berthctl pull`: through berth's own Images.Pull, so each layer's
//! progress shows as it downloads and unpacks. In a terminal the layer
//! lines are redrawn in place; otherwise (a log, a pipe) one line is
//! printed per finished layer. `push` shows its uploads the same way.

use std::{
    io::{IsTerminal, Write},
    path::Path,
};

use berth_api::admin::v1::{images_client::ImagesClient, pull_event::Event, LayerProgress, LayerState, PullRequest};

use crate::client::{connect, rpc_error};

pub async fn pull(socket: &Path, image: &str, creds: Option<&str>) -> anyhow::Result<()> {
    // Given, or stored by `berthctl login` (else berthd's own auth file).
    let (username, password) = match creds {
        Some(c) => c.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())).ok_or_else(|| anyhow::anyhow!("--creds must be user:password"))?,
        None => crate::credentials::for_image(image)?.unwrap_or_default(),
    };
    let mut client = ImagesClient::new(connect(socket).await?);
    let mut events = client.pull(PullRequest { image: image.into(), username, password }).await.map_err(rpc_error("pull"))?.into_inner();
    let mut view = ProgressView::new(std::io::stdout().is_terminal());
    while let Some(event) = events.message().await.map_err(rpc_error("pull"))? {
        match event.event {
            Some(Event::Layer(layer)) => view.update(layer),
            Some(Event::Pulled(pulled)) => {
                println!("{}", pulled.image_id);
                return Ok(());
            }
            None => {}
        }
    }
    anyhow::bail!("pull: berthd ended the stream before the image was pulled")
}

/// Per-layer lines of a pull or a push: redrawn in place on a terminal,
/// one line per finished layer otherwise.
pub(crate) struct ProgressView {
    terminal: bool,
    layers: Vec<LayerProgress>,
    drawn: usize,
}

impl ProgressView {
    pub(crate) fn new(terminal: bool) -> Self {
        Self { terminal, layers: Vec::new(), drawn: 0 }
    }

    pub(crate) fn update(&mut self, layer: LayerProgress) {
        let state = layer.state();
        match self.layers.iter_mut().find(|l| l.digest == layer.digest) {
            Some(known) => *known = layer.clone(),
            None => self.layers.push(layer.clone()),
        }
        if self.terminal {
            self.redraw();
        } else if matches!(state, LayerState::Done | LayerState::Exists | LayerState::Pushed) {
            println!("{}", line(&layer));
        }
    }

    fn redraw(&mut self) {
        let mut out = std::io::stdout().lock();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for layer in &self.layers {
            let _ = writeln!(out, "\x1b[2K{}", line(layer));
        }
        self.drawn = self.layers.len();
        let _ = out.flush();
    }
}

fn line(layer: &LayerProgress) -> String {
    let short: String = layer.digest.trim_start_matches("sha256:").chars().take(12).collect();
    let mb = |b: u64| b as f64 / 1e6;
    let what = match layer.state() {
        LayerState::Waiting => "waiting".to_string(),
        LayerState::Downloading => format!("downloading {:.1}/{:.1} MB", mb(layer.stored), mb(layer.size)),
        LayerState::Downloaded => format!("downloaded {:.1} MB", mb(layer.size)),
        LayerState::Unpacking => "unpacking".to_string(),
        LayerState::Done => format!("pulled {:.1} MB", mb(layer.size)),
        LayerState::Exists => "already exists".to_string(),
        LayerState::Uploading => format!("pushing {:.1}/{:.1} MB", mb(layer.stored), mb(layer.size)),
        LayerState::Pushed => format!("pushed {:.1} MB", mb(layer.size)),
    };
    format!("{short}: {what}")
}
