//! SPDY/3 frames: their wire form and the compressed header blocks.
//!
//! ```text
//! control: |1| version(15) | type(16) | flags(8) | length(24) | data |
//! data:    |0| stream-id(31)          | flags(8) | length(24) | data |
//! ```

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::dictionary::dictionary;

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Header blocks bigger than this (decompressed) end the session.
const MAX_HEADER_BLOCK: usize = 1 << 20;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame type this implementation ignores, as the spec says.
    Unknown {
        kind: u16,
    },
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// Compresses this side's header blocks: one zlib stream per direction for
/// the whole session, primed with the spec's dictionary.
pub struct HeaderEncoder(Compress);

impl Default for HeaderEncoder {
    fn default() -> Self {
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(dictionary()).expect("a fresh deflate stream takes a dictionary");
        Self(c)
    }
}

impl HeaderEncoder {
    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for s in [name.to_ascii_lowercase().as_str(), value.as_str()] {
                plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
                plain.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start = self.0.total_in();
        loop {
            let done = (self.0.total_in() - start) as usize;
            out.reserve(256);
            self.0.compress_vec(&plain[done..], &mut out, FlushCompress::Sync).expect("deflate into a growing buffer");
            // A sync flush is complete once all input is in and the
            // output buffer was not filled to the brim.
            if (self.0.total_in() - start) as usize == plain.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// Decompresses the peer's header blocks (its zlib stream).
pub struct HeaderDecoder(Decompress);

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self(Decompress::new(true))
    }
}

impl HeaderDecoder {
    pub fn decode(&mut self, block: &[u8]) -> std::io::Result<Headers> {
        let mut plain: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let start = self.0.total_in();
        loop {
            let used = (self.0.total_in() - start) as usize;
            if plain.len() == plain.capacity() {
                plain.reserve(plain.capacity().max(256));
            }
            match self.0.decompress_vec(&block[used..], &mut plain, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(dictionary()).map_err(|e| invalid(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(invalid(format!("header block: {e}"))),
            }
            if plain.len() > MAX_HEADER_BLOCK {
                return Err(invalid("header block too large"));
            }
            let used = (self.0.total_in() - start) as usize;
            if used == block.len() && plain.len() < plain.capacity() {
                break;
            }
        }
        parse_headers(&plain)
    }
}

fn parse_headers(mut b: &[u8]) -> std::io::Result<Headers> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> std::io::Result<&'a [u8]> {
        if b.len() < n {
            return Err(invalid("header block ends early"));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn number(b: &mut &[u8]) -> std::io::Result<usize> {
        Ok(u32::from_be_bytes(take(b, 4)?.try_into().expect("4 bytes")) as usize)
    }
    let count = number(&mut b)?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = number(&mut b)?;
        let name = String::from_utf8(take(&mut b, n)?.to_vec()).map_err(|_| invalid("header name is not UTF-8"))?;
        let n = number(&mut b)?;
        let value = String::from_utf8(take(&mut b, n)?.to_vec()).map_err(|_| invalid("header value is not UTF-8"))?;
        if name.is_empty() {
            return Err(invalid("empty header name"));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

impl Frame {
    pub fn encode(&self, headers: &mut HeaderEncoder) -> Vec<u8> {
        let control = |kind: u16, flags: u8, body: Vec<u8>| {
            let mut out = Vec::with_capacity(8 + body.len());
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&((flags as u32) << 24 | body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
            out
        };
        let words = |ws: &[u32]| ws.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        match self {
            Frame::SynStream { stream_id, associated_to, priority, flags, headers: h } => {
                let mut body = words(&[*stream_id & 0x7fff_ffff, *associated_to & 0x7fff_ffff]);
                body.extend_from_slice(&[(priority & 0x7) << 5, 0]);
                body.extend(headers.encode(h));
                control(SYN_STREAM, *flags, body)
            }
            Frame::SynReply { stream_id, flags, headers: h } => {
                let mut body = words(&[*stream_id & 0x7fff_ffff]);
                body.extend(headers.encode(h));
                control(SYN_REPLY, *flags, body)
            }
            Frame::Headers { stream_id, flags, headers: h } => {
                let mut body = words(&[*stream_id & 0x7fff_ffff]);
                body.extend(headers.encode(h));
                control(HEADERS, *flags, body)
            }
            Frame::RstStream { stream_id, status } => control(RST_STREAM, 0, words(&[*stream_id & 0x7fff_ffff, *status])),
            Frame::Settings { entries } => {
                let mut body = words(&[entries.len() as u32]);
                for (flags, id, value) in entries {
                    body.extend(words(&[(*flags as u32) << 24 | (id & 0xff_ffff), *value]));
                }
                control(SETTINGS, 0, body)
            }
            Frame::Ping { id } => control(PING, 0, words(&[*id])),
            Frame::GoAway { last_good_stream_id, status } => control(GOAWAY, 0, words(&[*last_good_stream_id & 0x7fff_ffff, *status])),
            Frame::WindowUpdate { stream_id, delta } => control(WINDOW_UPDATE, 0, words(&[*stream_id & 0x7fff_ffff, *delta & 0x7fff_ffff])),
            Frame::Data { stream_id, flags, data } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&((*flags as u32) << 24 | data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
                out
            }
            Frame::Unknown { kind } => control(*kind, 0, Vec::new()),
        }
    }
}

/// Reads one frame; `None` at a clean end of the connection (between
/// frames). Malformed input is an `InvalidData` error.
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin), headers: &mut HeaderDecoder) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let first = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).await?;
    if first & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data { stream_id: first, flags, data: body }));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(invalid(format!("SPDY version {version}; only 3 is spoken")));
    }
    let kind = (first & 0xffff) as u16;
    let word = |i: usize| -> std::io::Result<u32> {
        body.get(i * 4..i * 4 + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))).ok_or_else(|| invalid(format!("control frame {kind} too short")))
    };
    Ok(Some(match kind {
        SYN_STREAM => {
            if body.len() < 10 {
                return Err(invalid("SYN_STREAM too short"));
            }
            Frame::SynStream {
                stream_id: word(0)? & 0x7fff_ffff,
                associated_to: word(1)? & 0x7fff_ffff,
                priority: body[8] >> 5,
                flags,
                headers: headers.decode(&body[10..])?,
            }
        }
        SYN_REPLY => Frame::SynReply { stream_id: word(0)? & 0x7fff_ffff, flags, headers: headers.decode(&body[4..])? },
        HEADERS => Frame::Headers { stream_id: word(0)? & 0x7fff_ffff, flags, headers: headers.decode(&body[4..])? },
        RST_STREAM => Frame::RstStream { stream_id: word(0)? & 0x7fff_ffff, status: word(1)? },
        SETTINGS => {
            let n = word(0)? as usize;
            let mut entries = Vec::with_capacity(n.min(16));
            for i in 0..n {
                let (a, value) = (word(1 + 2 * i)?, word(2 + 2 * i)?);
                entries.push(((a >> 24) as u8, a & 0xff_ffff, value));
            }
            Frame::Settings { entries }
        }
        PING => Frame::Ping { id: word(0)? },
        GOAWAY => Frame::GoAway { last_good_stream_id: word(0)? & 0x7fff_ffff, status: word(1).unwrap_or(0) },
        WINDOW_UPDATE => Frame::WindowUpdate { stream_id: word(0)? & 0x7fff_ffff, delta: word(1)? & 0x7fff_ffff },
        other => Frame::Unknown { kind: other },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let (mut enc, mut dec) = (HeaderEncoder::default(), HeaderDecoder::default());
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode(&mut enc)).collect();
        let mut r = &wire[..];
        let mut out = Vec::new();
        while let Some(f) = read_frame(&mut r, &mut dec).await.unwrap() {
            out.push(f);
        }
        out
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[tokio::test]
    async fn every_frame_survives_encoding() {
        let frames = vec![
            Frame::SynStream { stream_id: 1, associated_to: 0, priority: 3, flags: FLAG_FIN, headers: h(&[("streamtype", "error")]) },
            // The second header block leans on the first's zlib context.
            Frame::SynStream { stream_id: 3, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "stdout"), ("port", "80")]) },
            Frame::SynReply { stream_id: 3, flags: 0, headers: vec![] },
            Frame::Headers { stream_id: 3, flags: 0, headers: h(&[("x", "y")]) },
            Frame::Data { stream_id: 3, flags: 0, data: b"hello".to_vec() },
            Frame::Data { stream_id: 3, flags: FLAG_FIN, data: vec![] },
            Frame::RstStream { stream_id: 5, status: 5 },
            Frame::Settings { entries: vec![(0, 7, 65536), (1, 4, 100)] },
            Frame::Ping { id: 2 },
            Frame::WindowUpdate { stream_id: 3, delta: 4096 },
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
        ];
        assert_eq!(round_trip(&frames).await, frames);
    }

    #[tokio::test]
    async fn the_wire_form_follows_the_spec() {
        let mut enc = HeaderEncoder::default();
        assert_eq!(Frame::Ping { id: 7 }.encode(&mut enc), [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(Frame::Data { stream_id: 5, flags: FLAG_FIN, data: b"ab".to_vec() }.encode(&mut enc), [0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        // A zlib stream with a preset dictionary: FDICT set, then the
        // dictionary's Adler-32 (the value every SPDY/3 peer expects).
        let block = enc.encode(&vec![]);
        assert_eq!(block[1] & 0x20, 0x20, "FDICT");
        let adler = {
            let (mut a, mut b) = (1u32, 0u32);
            for byte in dictionary() {
                a = (a + *byte as u32) % 65521;
                b = (b + a) % 65521;
            }
            b << 16 | a
        };
        assert_eq!(u32::from_be_bytes(block[2..6].try_into().unwrap()), adler);
        assert_eq!(dictionary().len(), 1423, "the spec's dictionary is 1423 bytes");
    }

    #[tokio::test]
    async fn malformed_input_is_an_error_not_a_panic() {
        let mut dec = HeaderDecoder::default();
        // Wrong version.
        assert!(read_frame(&mut &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..], &mut dec).await.is_err());
        // A SYN_STREAM whose header block is not zlib.
        let mut bad = vec![0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bad.extend_from_slice(b"junk");
        assert!(read_frame(&mut &bad[..], &mut HeaderDecoder::default()).await.is_err());
        // Truncated body.
        assert!(read_frame(&mut &[0, 0, 0, 1, 0, 0, 0, 9, 1][..], &mut dec).await.is_err());
        // Header count larger than the block.
        assert!(parse_headers(&[0, 0, 0, 9, 0, 0, 0, 1, b'a']).is_err());
        // A PING without its id.
        assert!(read_frame(&mut &[0x80, 3, 0, 6, 0, 0, 0, 0][..], &mut dec).await.is_err());
    }
}
