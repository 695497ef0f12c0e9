//! The log-drops contract between berth-shim and berthd. When a
//! container's CRI log cannot take its output (a full disk, a quota), the
//! shim drops the output rather than stall the container, and records what
//! it dropped in `<bundle>/log-drops.json`; berthd reads that file to
//! report the condition. Both ends use this type, so they cannot drift.

use serde::{Deserialize, Serialize};

/// The file in the container's bundle; absent while nothing was dropped.
pub const FILE_NAME: &str = "log-drops.json";

/// What a container's log lost, over the container's whole life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogDrops {
    /// Log records dropped: lines, or 16 KiB pieces of longer lines.
    pub lines: u64,
    /// Bytes of output dropped (each line's text and its newline).
    pub bytes: u64,
    /// Times the log stopped taking output.
    pub episodes: u64,
    /// The log takes no output now: a write failed and none succeeded
    /// since (the shim only learns that space is back at the next line).
    pub dropping: bool,
    /// The cause of the last failed write, e.g. `no space left on device`.
    pub last_error: String,
    /// When the current (or last) episode began, RFC 3339.
    pub since: String,
}

impl LogDrops {
    /// The file's content; `None` if it does not parse.
    pub fn parse(json: &[u8]) -> Option<LogDrops> {
        serde_json::from_slice(json).ok()
    }
}
