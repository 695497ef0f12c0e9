//! SPDY/3.1, as much of it as Kubernetes streams use, written from the
//! SPDY Protocol Draft 3 (and 3.1) specification: framing, zlib header
//! blocks with the spec's dictionary, and a session that multiplexes
//! streams over one connection.
//!
//! Left out, on purpose: priorities, server push, and flow control. The
//! Go implementation Kubernetes clients use (spdystream) does not enforce
//! windows, and streams here are consumed as fast as they arrive.

mod dictionary;
mod frame;
mod session;

pub use frame::{read_frame, Frame, HeaderDecoder, HeaderEncoder, Headers, FLAG_FIN, FLAG_UNIDIRECTIONAL, VERSION};
pub use session::{start, Connection, Stream, StreamWriter};

/// A header's value, case-insensitively by name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
