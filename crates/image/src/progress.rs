//! Per-layer progress of a pull, for a client that shows it (berthctl in
//! a terminal). Reporting never blocks or fails a pull: with nobody
//! listening, events are dropped.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    Waiting,
    Downloading,
    Downloaded,
    Unpacking,
    Done,
    /// The blob was already in the content store (a pull) or in the
    /// registry (a push).
    Exists,
    /// A push's blob on its way; `stored` counts the bytes sent.
    Uploading,
    /// A push's blob is in the registry.
    Pushed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    /// Compressed size from the manifest.
    pub size: u64,
    /// Bytes in the content store so far.
    pub stored: u64,
    pub state: LayerState,
}

/// Where a pull reports progress; `Progress::default()` reports nowhere.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<UnboundedSender<LayerProgress>>);

impl Progress {
    pub fn channel() -> (Self, UnboundedReceiver<LayerProgress>) {
        let (tx, rx) = unbounded_channel();
        (Self(Some(tx)), rx)
    }

    pub(crate) fn report(&self, digest: &str, size: u64, stored: u64, state: LayerState) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(LayerProgress { digest: digest.into(), size, stored, state });
        }
    }
}

/// Download progress at most every `INTERVAL`: a 500 MB layer arrives in
/// tens of thousands of chunks, and a terminal needs a handful per second.
pub(crate) struct Throttle {
    last: Option<Instant>,
}

const INTERVAL: Duration = Duration::from_millis(100);

impl Throttle {
    pub(crate) fn new() -> Self {
        Self { last: None }
    }

    pub(crate) fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < INTERVAL) {
            return false;
        }
        self.last = Some(now);
        true
    }
}
