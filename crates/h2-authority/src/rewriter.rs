//! The client-to-server half of an HTTP/2 connection, with header blocks
//! whose `:authority` names a socket path re-encoded.
//!
//! Everything else passes through byte for byte, and every check stays
//! with the HTTP/2 stack behind: when the input is not what a conforming
//! client sends (a bad preface, a broken HPACK block, a frame where a
//! CONTINUATION must come), the rewriter stops looking and passes the rest
//! of the connection through untouched, so h2 sees and refuses it.
//!
//! Only a connection whose first header block needs repair is looked at
//! further (see `finish_block`); the others pass through once that block
//! is decoded.
//!
//! HPACK is stateful: both ends keep a dynamic table that every header
//! block may change. The rewriter decodes every block with a decoder of
//! its own, fed exactly the client's bytes, so it always mirrors the
//! client's table. Until a block needs repair, blocks go through unchanged
//! and h2's decoder sees the same bytes. From the first repaired block on,
//! every block is re-encoded as literals that never touch the dynamic table,
//! so whatever h2's table holds is never referred to again.

use loona_hpack::{encoder::encode_integer_into, Decoder};

use crate::authority;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Re-encoded blocks are cut into frames of at most this size: the
/// smallest SETTINGS_MAX_FRAME_SIZE a peer may announce, so it fits any
/// server setting.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A header block larger than this is not buffered: the rewriter gives up
/// on the connection (see `Mode::Transparent`). h2 refuses header lists far
/// smaller than this.
const MAX_BLOCK: usize = 1 << 20;

enum Mode {
    /// Waiting for the 24-byte preface.
    Preface,
    /// Between frames, or inside one.
    Frames,
    /// Everything from here on passes through unchanged.
    Transparent,
}

/// A header block being assembled from HEADERS + CONTINUATION frames.
struct Block {
    stream_id: u32,
    end_stream: bool,
    /// The 5 priority bytes of the HEADERS frame, if it had them.
    priority: Option<[u8; 5]>,
    /// The HPACK bytes, padding removed.
    fragment: Vec<u8>,
    /// The frames as the client sent them, passed on when nothing changes.
    original: Vec<u8>,
}

pub struct Rewriter {
    mode: Mode,
    /// Input not yet handled: part of the preface, a frame header, or a
    /// header frame's payload.
    pending: Vec<u8>,
    /// Bytes of a non-header frame's payload still to pass through.
    passthrough: usize,
    block: Option<Block>,
    decoder: Decoder<'static>,
    /// Set by the first repaired block; from then on every block is
    /// re-encoded (see the module comment).
    reencoding: bool,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self { mode: Mode::Preface, pending: Vec::new(), passthrough: 0, block: None, decoder: Decoder::new(), reencoding: false }
    }
}

impl Rewriter {
    /// Takes bytes read from the client and appends what the server should
    /// read to `out`. Incomplete frames are kept until more bytes come.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.mode {
                Mode::Transparent => {
                    out.extend_from_slice(input);
                    return;
                }
                Mode::Preface => {
                    let take = (PREFACE.len() - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if !PREFACE.starts_with(&self.pending) {
                        self.give_up(out);
                    } else if self.pending.len() == PREFACE.len() {
                        out.append(&mut self.pending);
                        self.mode = Mode::Frames;
                    }
                }
                Mode::Frames if self.passthrough > 0 => {
                    let take = self.passthrough.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.passthrough -= take;
                }
                Mode::Frames => {
                    let need = self.bytes_needed();
                    let take = need.saturating_sub(self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == need {
                        self.frame_ready(out);
                    }
                }
            }
        }
    }

    /// The connection ended: pass on whatever incomplete input is held, so
    /// the server sees the same truncated stream the client sent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.give_up(out);
    }

    /// How many bytes `pending` must hold before the next step: a frame
    /// header, or a header frame with its payload.
    fn bytes_needed(&self) -> usize {
        if self.pending.len() < FRAME_HEADER_LEN {
            FRAME_HEADER_LEN
        } else {
            FRAME_HEADER_LEN + payload_len(&self.pending)
        }
    }

    /// `pending` holds a frame header, or a whole header frame.
    fn frame_ready(&mut self, out: &mut Vec<u8>) {
        let frame_type = self.pending[3];
        let is_header_frame = frame_type == HEADERS || frame_type == CONTINUATION;
        if !is_header_frame {
            if self.block.is_some() {
                // Only CONTINUATION may follow an unfinished block: a
                // protocol error h2 must see.
                return self.give_up(out);
            }
            self.passthrough = payload_len(&self.pending);
            out.append(&mut self.pending);
            return;
        }
        let len = payload_len(&self.pending);
        if len > MAX_BLOCK || self.block.as_ref().is_some_and(|b| b.fragment.len() + len > MAX_BLOCK) {
            return self.give_up(out);
        }
        if self.pending.len() < FRAME_HEADER_LEN + len {
            return; // the payload is still to come
        }
        let frame = std::mem::take(&mut self.pending);
        let accepted = if frame_type == HEADERS { self.start_block(frame) } else { self.continue_block(frame) };
        match accepted {
            Err(frame) => {
                self.pending = frame;
                self.give_up(out);
            }
            Ok(()) if self.block_complete() => self.finish_block(out),
            Ok(()) => {}
        }
    }

    fn start_block(&mut self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        if self.block.is_some() {
            return Err(frame);
        }
        let flags = frame[4];
        let payload = &frame[FRAME_HEADER_LEN..];
        let (pad, mut start) = if flags & PADDED != 0 {
            match payload.first() {
                Some(&pad) => (pad as usize, 1),
                None => return Err(frame),
            }
        } else {
            (0, 0)
        };
        let priority = if flags & PRIORITY != 0 {
            let Some(bytes) = payload.get(start..start + 5) else { return Err(frame) };
            start += 5;
            Some(<[u8; 5]>::try_from(bytes).expect("slice of 5"))
        } else {
            None
        };
        let Some(fragment) = payload.len().checked_sub(pad).and_then(|end| payload.get(start..end)) else { return Err(frame) };
        let fragment = fragment.to_vec();
        self.block = Some(Block { stream_id: stream_id(&frame), end_stream: flags & END_STREAM != 0, priority, fragment, original: frame });
        Ok(())
    }

    fn continue_block(&mut self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        let Some(block) = self.block.as_mut().filter(|b| b.stream_id == stream_id(&frame)) else { return Err(frame) };
        block.fragment.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
        block.original.extend_from_slice(&frame);
        Ok(())
    }

    /// The last frame appended ended the block.
    fn block_complete(&self) -> bool {
        let Some(block) = &self.block else { return false };
        let last_frame_flags = last_frame_flags(&block.original);
        last_frame_flags & END_HEADERS != 0
    }

    fn finish_block(&mut self, out: &mut Vec<u8>) {
        let block = self.block.take().expect("complete block");
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if self.decoder.decode_with_cb(&block.fragment, |name, value| headers.push((name.into_owned(), value.into_owned()))).is_err() {
            // h2 reports the broken block (COMPRESSION_ERROR) itself.
            self.pending = block.original;
            return self.give_up(out);
        }
        for (_, value) in headers.iter_mut().filter(|(name, _)| name == b":authority") {
            if let Some(replacement) = authority::repair(value) {
                tracing::debug!(authority = %String::from_utf8_lossy(value), "socket path as :authority; serving it as localhost");
                *value = replacement.to_vec();
                self.reencoding = true;
            }
        }
        if self.reencoding {
            write_block(&block, &headers, out);
        } else {
            // A gRPC channel sends the same authority on every stream of a
            // connection. If the first block needed no repair, none will:
            // the rest of the connection passes through without being
            // decoded (HPACK decoding cost ~40 us per call, measured by
            // benches/round_trip.rs, which every grpc-go client, the
            // kubelet among them, would pay for nothing).
            out.extend_from_slice(&block.original);
            self.mode = Mode::Transparent;
        }
    }

    /// Passes on what is held and everything after it unchanged.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.original);
        }
        out.append(&mut self.pending);
        self.mode = Mode::Transparent;
    }
}

fn payload_len(frame: &[u8]) -> usize {
    (frame[0] as usize) << 16 | (frame[1] as usize) << 8 | frame[2] as usize
}

fn stream_id(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff
}

/// The flags of the last frame in a run of whole frames.
fn last_frame_flags(frames: &[u8]) -> u8 {
    let mut at = 0;
    let mut flags = 0;
    while at + FRAME_HEADER_LEN <= frames.len() {
        flags = frames[at + 4];
        at += FRAME_HEADER_LEN + payload_len(&frames[at..]);
    }
    flags
}

/// Writes `headers` as one HEADERS frame and as many CONTINUATION frames as
/// needed, every field a literal without indexing (HPACK §6.2.2), so the
/// server's dynamic table is never read or changed.
fn write_block(block: &Block, headers: &[(Vec<u8>, Vec<u8>)], out: &mut Vec<u8>) {
    let mut hpack = Vec::new();
    for (name, value) in headers {
        hpack.push(0x00);
        write_string(name, &mut hpack);
        write_string(value, &mut hpack);
    }
    let mut first = Vec::with_capacity(5);
    if let Some(priority) = block.priority {
        first.extend_from_slice(&priority);
    }
    let room = MAX_FRAME_PAYLOAD - first.len();
    let (head, mut rest) = hpack.split_at(room.min(hpack.len()));
    first.extend_from_slice(head);
    let mut flags = if block.end_stream { END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    write_frame(HEADERS, flags, block.stream_id, &first, out);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(MAX_FRAME_PAYLOAD.min(rest.len()));
        rest = tail;
        write_frame(CONTINUATION, if rest.is_empty() { END_HEADERS } else { 0 }, block.stream_id, chunk, out);
    }
}

/// An HPACK string literal without Huffman coding (§5.2).
fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer_into(bytes.len(), 7, 0, out).expect("writing to a Vec cannot fail");
    out.extend_from_slice(bytes);
}

fn write_frame(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(frame_type);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests;
