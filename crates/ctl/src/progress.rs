//! Per-layer progress of a pull or a push. On a terminal each layer is an
//! indicatif bar, redrawn in place as bytes move; otherwise (a log, a
//! pipe) one plain line is printed per finished layer, with no escape
//! codes.

use std::{collections::HashMap, io::IsTerminal};

use berth_api::admin::v1::{LayerProgress, LayerState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct ProgressView {
    /// Some on a terminal.
    bars: Option<MultiProgress>,
    by_digest: HashMap<String, ProgressBar>,
}

impl ProgressView {
    pub(crate) fn new() -> Self {
        // Docker draws its progress on stdout; so does berthctl.
        let bars = std::io::stdout().is_terminal().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Self { bars, by_digest: HashMap::new() }
    }

    pub(crate) fn update(&mut self, layer: LayerProgress) {
        let state = layer.state();
        let finished = matches!(state, LayerState::Done | LayerState::Exists | LayerState::Pushed);
        let Some(bars) = &self.bars else {
            if finished {
                println!("{}: {}", short_digest(&layer.digest), words(&layer));
            }
            return;
        };
        let bar = self.by_digest.entry(layer.digest.clone()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new(layer.size));
            bar.set_prefix(short_digest(&layer.digest));
            bar
        });
        let moving = matches!(state, LayerState::Downloading | LayerState::Uploading);
        bar.set_style(if moving { transfer_style() } else { state_style() });
        bar.set_length(layer.size);
        bar.set_position(layer.stored.min(layer.size));
        bar.set_message(words(&layer));
        if finished {
            bar.finish();
        } else {
            bar.tick();
        }
    }

    /// Leaves every bar drawn as it last was, before the final line.
    pub(crate) fn finish(&mut self) {
        for bar in self.by_digest.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

fn transfer_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg:12} [{bar:30}] {bytes}/{total_bytes}").expect("a valid template").progress_chars("=> ")
}

fn state_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").expect("a valid template")
}

fn short_digest(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}

/// What the layer is doing, in words (sizes in MB as Docker shows them).
fn words(layer: &LayerProgress) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    match layer.state() {
        LayerState::Waiting => "waiting".to_string(),
        LayerState::Downloading => "downloading".to_string(),
        LayerState::Downloaded => format!("downloaded {:.1} MB", mb(layer.size)),
        LayerState::Unpacking => "unpacking".to_string(),
        LayerState::Done => format!("pulled {:.1} MB", mb(layer.size)),
        LayerState::Exists => "already exists".to_string(),
        LayerState::Uploading => "pushing".to_string(),
        LayerState::Pushed => format!("pushed {:.1} MB", mb(layer.size)),
    }
}
