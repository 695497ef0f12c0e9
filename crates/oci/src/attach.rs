//! The attach contract between berthd and berth-shim (both ends use these,
//! so they cannot drift). The shim listens beside its Task API socket;
//! after the client's one-line JSON header (`{"stdout":true,"stderr":true}`)
//! both sides send frames of `[kind u8][len u32 BE][len bytes]`.

/// The container's stdin value meaning "fed by attach clients".
pub const ATTACH_STDIN: &str = "attach:";

/// Client to shim: stdin bytes.
pub const STDIN: u8 = 0;
/// Shim to client: stdout bytes.
pub const STDOUT: u8 = 1;
/// Shim to client: stderr bytes.
pub const STDERR: u8 = 2;
/// Client to shim: close the container's stdin (`stdin_once`).
pub const CLOSE_STDIN: u8 = 3;
/// Client to shim: terminal size, width and height as u16 BE.
pub const RESIZE: u8 = 4;
/// Shim to client, once, when the header asked for it (`"ack":true`): the
/// client is registered, so every byte of output from now on reaches it.
/// berthd asks for it when it attaches before Start.
pub const ACK: u8 = 5;

/// One frame in wire form.
pub fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(kind);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}
