use loona_hpack::{Decoder, Encoder};

use super::*;

const PATH_AUTHORITY: &[u8] = b"%2Frun%2Fberth%2Fberth.sock";

fn request_headers(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    [
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", b"/runtime.v1.RuntimeService/Version"),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"user-agent", b"grpc-python/1.76"),
    ]
    .iter()
    .map(|(n, v)| (n.to_vec(), v.to_vec()))
    .collect()
}

fn frame(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(frame_type, flags, stream_id, payload, &mut out);
    out
}

/// A HEADERS frame as a client's encoder (with the dynamic table) makes it.
fn headers_frame(encoder: &mut Encoder, stream_id: u32, headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let block = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    frame(HEADERS, END_HEADERS, stream_id, &block)
}

fn rewrite(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rewriter = Rewriter::default();
    rewriter.push(input, &mut out);
    rewriter.finish(&mut out);
    out
}

/// What a server sees: every header block of `stream`, decoded by one
/// decoder as h2's would be, and the (type, payload) of other frames.
type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

fn server_view(stream: &[u8]) -> (Vec<HeaderList>, Vec<(u8, Vec<u8>)>) {
    assert!(stream.starts_with(PREFACE));
    let mut at = PREFACE.len();
    let mut decoder = Decoder::new();
    let (mut blocks, mut others, mut fragment) = (Vec::new(), Vec::new(), Vec::new());
    while at < stream.len() {
        let len = payload_len(&stream[at..]);
        let (frame_type, flags) = (stream[at + 3], stream[at + 4]);
        let payload = &stream[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len];
        at += FRAME_HEADER_LEN + len;
        if frame_type != HEADERS && frame_type != CONTINUATION {
            others.push((frame_type, payload.to_vec()));
            continue;
        }
        let mut payload = payload;
        if frame_type == HEADERS {
            if flags & PADDED != 0 {
                let pad = payload[0] as usize;
                payload = &payload[1..payload.len() - pad];
            }
            if flags & PRIORITY != 0 {
                payload = &payload[5..];
            }
        }
        fragment.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            blocks.push(decoder.decode(&fragment).expect("the server can decode what it reads"));
            fragment.clear();
        }
    }
    (blocks, others)
}

#[test]
fn a_valid_authority_passes_byte_for_byte() {
    let mut encoder = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
    input.extend(headers_frame(&mut encoder, 1, &request_headers(b"localhost")));
    input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\x02hi"));
    assert_eq!(rewrite(&input), input);
}

#[test]
fn a_socket_path_authority_becomes_localhost_and_later_blocks_still_decode() {
    let mut encoder = Encoder::new();
    let mut input = PREFACE.to_vec();
    // The client's second and third blocks refer to dynamic-table entries
    // its first block made, including the :authority one.
    for stream_id in [1, 3, 5] {
        input.extend(headers_frame(&mut encoder, stream_id, &request_headers(PATH_AUTHORITY)));
        input.extend(frame(0x0, END_STREAM, stream_id, b"\0\0\0\0\0"));
    }
    let (blocks, others) = server_view(&rewrite(&input));
    assert_eq!(blocks.len(), 3);
    for block in blocks {
        assert_eq!(block, request_headers(b"localhost"));
    }
    assert_eq!(others.len(), 3, "DATA frames pass");
}

#[test]
fn blocks_after_the_first_repair_are_reencoded_even_when_valid() {
    let mut encoder = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(headers_frame(&mut encoder, 1, &request_headers(PATH_AUTHORITY)));
    let mut second = request_headers(b"localhost");
    second.push((b"x-extra".to_vec(), b"1".to_vec()));
    input.extend(headers_frame(&mut encoder, 3, &second));
    let (blocks, _) = server_view(&rewrite(&input));
    assert_eq!(blocks, vec![request_headers(b"localhost"), second]);
}

#[test]
fn a_connection_whose_first_block_is_valid_passes_through_unlooked_at() {
    // A gRPC channel keeps one authority; the rewriter relies on that and
    // stops decoding after a first block that needed nothing.
    let mut encoder = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(headers_frame(&mut encoder, 1, &request_headers(b"localhost")));
    input.extend(headers_frame(&mut encoder, 3, &request_headers(PATH_AUTHORITY)));
    input.extend(b"not a frame at all");
    assert_eq!(rewrite(&input), input);
}

#[test]
fn input_split_anywhere_gives_the_same_output() {
    let mut encoder = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(headers_frame(&mut encoder, 1, &request_headers(PATH_AUTHORITY)));
    input.extend(frame(0x0, 0, 1, &[7; 100]));
    input.extend(headers_frame(&mut encoder, 3, &request_headers(PATH_AUTHORITY)));
    let whole = rewrite(&input);
    let mut rewriter = Rewriter::default();
    let mut bytewise = Vec::new();
    for b in &input {
        rewriter.push(std::slice::from_ref(b), &mut bytewise);
    }
    rewriter.finish(&mut bytewise);
    assert_eq!(bytewise, whole);
}

#[test]
fn padding_priority_and_continuation_are_understood() {
    let mut encoder = Encoder::new();
    let block = encoder.encode(request_headers(PATH_AUTHORITY).iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
    let (head, tail) = block.split_at(10);
    let mut payload = vec![3u8]; // pad length
    payload.extend([0x80, 0, 0, 0, 16]); // exclusive dependency on 0, weight 16
    payload.extend(head);
    payload.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
    let out = rewrite(&input);
    let (blocks, _) = server_view(&out);
    assert_eq!(blocks, vec![request_headers(b"localhost")]);
    let flags = out[PREFACE.len() + 4];
    assert_eq!(flags, PRIORITY | END_STREAM | END_HEADERS, "priority and end of stream kept, padding dropped");
    assert_eq!(&out[PREFACE.len() + FRAME_HEADER_LEN..][..5], &[0x80, 0, 0, 0, 16]);
}

#[test]
fn a_block_larger_than_a_frame_is_cut_into_continuations() {
    let mut headers = request_headers(PATH_AUTHORITY);
    headers.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
    let mut input = PREFACE.to_vec();
    input.extend(headers_frame(&mut Encoder::new(), 1, &headers));
    let out = rewrite(&input);
    let mut expected = headers.clone();
    expected[3].1 = b"localhost".to_vec();
    assert_eq!(server_view(&out).0, vec![expected]);
    let mut at = PREFACE.len();
    while at < out.len() {
        assert!(payload_len(&out[at..]) <= MAX_FRAME_PAYLOAD);
        at += FRAME_HEADER_LEN + payload_len(&out[at..]);
    }
}

#[test]
fn malformed_input_reaches_the_server_unchanged() {
    let good = headers_frame(&mut Encoder::new(), 1, &request_headers(PATH_AUTHORITY));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no preface", [b"GET / HTTP/1.1\r\n\r\n".to_vec(), good.clone()].concat()),
        ("broken hpack", [PREFACE, &frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff])].concat()),
        ("data inside a header block", [PREFACE, &frame(HEADERS, 0, 1, &good[FRAME_HEADER_LEN..]), &frame(0x0, 0, 1, b"x")].concat()),
        ("continuation of nothing", [PREFACE, &frame(CONTINUATION, END_HEADERS, 1, &good[FRAME_HEADER_LEN..])].concat()),
        ("padding longer than the frame", [PREFACE, &frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 1, 2])].concat()),
        ("truncated frame", [PREFACE, &good[..good.len() - 3]].concat()),
    ];
    for (what, input) in cases {
        assert_eq!(rewrite(&input), input, "{what}");
    }
}

#[test]
fn an_authority_that_is_not_a_socket_path_is_left_for_h2_to_refuse() {
    let mut input = PREFACE.to_vec();
    input.extend(headers_frame(&mut Encoder::new(), 1, &request_headers(b"bad host")));
    assert_eq!(rewrite(&input), input);
}
