//! SPDY/3.1 as the streaming server reads it from `crictl`/the kubelet
//! (`berth_streaming::spdy`): frames, zlib header blocks, and a whole
//! session.
//!
//! - `spdy_frames`: a byte stream read frame by frame with one header
//!   decoder (as a session does); every frame read is written back with
//!   berth's encoder and must read back the same (names lowercased, as
//!   SPDY/3 has them).
//! - `spdy_header_block`: one compressed header block; what decodes must
//!   survive encode and decode.
//! - `spdy_session`: the bytes as a peer's half of a connection to a
//!   server session; the session must end (no hang) without a panic in
//!   its tasks, whatever it was sent.

use std::time::Duration;

use berth_fuzz::Target;
use berth_streaming::spdy::{self, read_frame, Frame, HeaderDecoder, HeaderEncoder, Headers, FLAG_FIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// What crictl's exec sends: the streams of a remotecommand exchange.
fn exec_session() -> Vec<u8> {
    let mut enc = HeaderEncoder::default();
    let frames = [
        Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "error")]) },
        Frame::SynStream { stream_id: 3, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "stdin")]) },
        Frame::SynStream { stream_id: 5, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "stdout")]) },
        Frame::SynStream { stream_id: 7, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "resize")]) },
        Frame::Data { stream_id: 3, flags: 0, data: b"echo hi\n".to_vec() },
        Frame::Data { stream_id: 7, flags: 0, data: br#"{"Width":80,"Height":24}"#.to_vec() },
        Frame::Data { stream_id: 3, flags: FLAG_FIN, data: Vec::new() },
        Frame::Ping { id: 1 },
        Frame::Settings { entries: vec![(0, 7, 65536)] },
        Frame::WindowUpdate { stream_id: 5, delta: 4096 },
        Frame::Headers { stream_id: 5, flags: 0, headers: h(&[("x", "y")]) },
        Frame::RstStream { stream_id: 5, status: 5 },
        Frame::GoAway { last_good_stream_id: 7, status: 0 },
    ];
    frames.iter().flat_map(|f| f.encode(&mut enc)).collect()
}

/// A port-forward's data and error streams.
fn port_forward_session() -> Vec<u8> {
    let mut enc = HeaderEncoder::default();
    let frames = [
        Frame::SynStream { stream_id: 1, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]) },
        Frame::SynStream { stream_id: 3, associated_to: 0, priority: 0, flags: 0, headers: h(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]) },
        Frame::Data { stream_id: 3, flags: FLAG_FIN, data: b"GET / HTTP/1.0\r\n\r\n".to_vec() },
    ];
    frames.iter().flat_map(|f| f.encode(&mut enc)).collect()
}

fn lowercased(frame: &Frame) -> Frame {
    let lower = |headers: &Headers| headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
    match frame {
        Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
            Frame::SynStream { stream_id: *stream_id, associated_to: *associated_to, priority: *priority, flags: *flags, headers: lower(headers) }
        }
        Frame::SynReply { stream_id, flags, headers } => Frame::SynReply { stream_id: *stream_id, flags: *flags, headers: lower(headers) },
        Frame::Headers { stream_id, flags, headers } => Frame::Headers { stream_id: *stream_id, flags: *flags, headers: lower(headers) },
        other => other.clone(),
    }
}

#[test]
fn spdy_frames() {
    let rt = runtime();
    Target::new("spdy_frames").seed("exec", exec_session()).seed("port-forward", port_forward_session()).run(|input| {
        rt.block_on(async {
            let mut decoder = HeaderDecoder::default();
            let mut wire = input;
            let mut frames = Vec::new();
            while let Ok(Some(frame)) = read_frame(&mut wire, &mut decoder).await {
                frames.push(lowercased(&frame));
            }
            let mut encoder = HeaderEncoder::default();
            let written: Vec<u8> = frames.iter().flat_map(|f| f.encode(&mut encoder)).collect();
            let (mut wire, mut decoder, mut again) = (&written[..], HeaderDecoder::default(), Vec::new());
            loop {
                match read_frame(&mut wire, &mut decoder).await {
                    Ok(Some(frame)) => again.push(frame),
                    Ok(None) => break,
                    Err(e) => panic!("berth cannot read the frames it wrote: {e}"),
                }
            }
            assert_eq!(again, frames, "frames changed in a round trip");
        });
    });
}

#[test]
fn spdy_header_block() {
    let mut enc = HeaderEncoder::default();
    let typical = enc.encode(&h(&[("streamtype", "stdout"), ("port", "8080"), ("requestid", "1")]));
    Target::new("spdy_header_block").seed("typical", typical).seed("empty", HeaderEncoder::default().encode(&Vec::new())).run(|input| {
        let Ok(headers) = HeaderDecoder::default().decode(input) else { return };
        assert!(headers.iter().all(|(name, _)| !name.is_empty()), "an empty header name was accepted");
        let lower: Headers = headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
        let block = HeaderEncoder::default().encode(&headers);
        let again = HeaderDecoder::default().decode(&block).unwrap_or_else(|e| panic!("berth cannot read a header block it wrote: {e}"));
        assert_eq!(again, lower);
    });
}

#[test]
fn spdy_session() {
    let rt = runtime();
    Target::new("spdy_session").seed("exec", exec_session()).seed("port-forward", port_forward_session()).run(|input| {
        rt.block_on(async {
            let (server_io, peer) = tokio::io::duplex(64 * 1024);
            let (_conn, mut incoming, task) = spdy::start(server_io, true);
            // Take every stream the peer opens and drain its data, as the
            // streaming server does, and read what the session answers, so
            // nothing waits on this side.
            let streams = tokio::spawn(async move {
                while let Some(mut stream) = incoming.recv().await {
                    tokio::spawn(async move { while stream.data.recv().await.is_some() {} });
                }
            });
            let (mut peer_read, mut peer_write) = tokio::io::split(peer);
            let drain = tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = peer_read.read_to_end(&mut sink).await;
            });
            let feed = async {
                let _ = peer_write.write_all(input).await;
                let _ = peer_write.shutdown().await;
            };
            let (_, result) =
                tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(feed, task) }).await.expect("the session ends once the peer's bytes do");
            if let Err(e) = &result {
                assert!(!e.is_panic(), "the session's reader panicked: {e}");
            }
            drain.abort();
            streams.abort();
        });
    });
}
