//! Which `:authority` values are repaired, and into what.
//!
//! gRPC clients disagree on what to send as the authority of a unix-socket
//! target. grpc-go (the kubelet, crictl 1.30+) sends `localhost`; grpc-core
//! (Python, C++, Ruby) sends the socket path percent-encoded
//! (`%2Frun%2Fberth%2Fberth.sock`); grpc-java and older grpc-go send the raw
//! path. RFC 3986 allows neither form in an authority, and the HTTP/2 stack
//! under tonic (h2) resets such a stream with PROTOCOL_ERROR. containerd and
//! CRI-O (grpc-go servers) ignore the value. berth does the same, but only
//! for values that name a socket path: any other malformed authority still
//! reaches h2 as sent and is refused there.

/// What a socket-path authority becomes: the value the kubelet sends.
pub const REPLACEMENT: &[u8] = b"localhost";

/// `Some(REPLACEMENT)` when `value` is not a valid authority but names a
/// unix socket: a path, raw or percent-encoded, with or without its
/// leading `/` (grpc-core 1.85 sends `run%2Fberth%2Fberth.sock` for
/// `unix:///run/berth/berth.sock`), optionally with a `unix:` scheme.
/// `None` when it should reach the HTTP/2 stack unchanged.
pub fn repair(value: &[u8]) -> Option<&'static [u8]> {
    if http::uri::Authority::try_from(value).is_ok() {
        return None;
    }
    let decoded = percent_decode(value)?;
    let path = strip_unix_scheme(&decoded);
    let is_path = path.contains(&b'/') && path.iter().all(|b| b.is_ascii_graphic());
    is_path.then_some(REPLACEMENT)
}

fn strip_unix_scheme(value: &[u8]) -> &[u8] {
    for prefix in [&b"unix://"[..], b"unix:"] {
        if let Some(rest) = value.strip_prefix(prefix) {
            return rest;
        }
    }
    value
}

/// `None` for a broken escape (`%` not followed by two hex digits): such a
/// value is not a socket path a client would have encoded.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = hex_digit(*bytes.next()?)?;
            let lo = hex_digit(*bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_authorities_are_left_alone() {
        for ok in ["localhost", "localhost:0", "127.0.0.1:5000", "[::1]:80", "berth.sock"] {
            assert_eq!(repair(ok.as_bytes()), None, "{ok}");
        }
    }

    #[test]
    fn socket_paths_in_every_client_form_become_localhost() {
        for path in [
            "/run/berth/berth.sock",       // grpc-java, crictl <= 1.29
            "%2Frun%2Fberth%2Fberth.sock", // grpc-core (Python, C++, Ruby)
            "run%2Fberth%2Fberth.sock",    // grpc-core 1.85 for unix:///run/...
            "%2frun%2fberth%2fberth.sock", // lower-case escapes
            "unix:/run/berth/berth.sock",  // scheme kept by some clients
            "unix:///run/berth/berth.sock",
            "unix%3A%2Frun%2Fberth.sock",
        ] {
            assert_eq!(repair(path.as_bytes()), Some(REPLACEMENT), "{path}");
        }
    }

    #[test]
    fn other_malformed_authorities_still_reach_the_http2_stack() {
        for bad in ["a b", "%zz/run", "/run/a b.sock", "%2Frun%0A", "%2", "\u{7f}", "plain name"] {
            assert_eq!(repair(bad.as_bytes()), None, "{bad}");
        }
    }
}
