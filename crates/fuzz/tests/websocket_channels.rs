//! The exec/attach channel protocol over WebSocket (`v4`/`v5.channel.k8s.io`):
//! each client message is decoded by `berth_streaming::channel_message`,
//! resize payloads go through `berth_streaming::ResizeStream`, as the
//! streaming server's reader does.
//!
//! Input: a v5 flag, then length-prefixed messages. Checked: stdin
//! gets exactly the payload after the channel byte; the resize buffer
//! stays bounded; and after any sequence, well-formed resize messages
//! come through again within a bound (before berth dropped what can never
//! be a size, one bad message stopped every later resize).

use berth_fuzz::Target;
use berth_streaming::{channel, channel_message, ChannelMessage, ResizeStream, TermSize};

fn message(channel: u8, payload: &[u8]) -> Vec<u8> {
    [&[channel][..], payload].concat()
}

/// The input's framing: a byte whose low bit says v5, then each message
/// as a length byte and that many bytes (a short last one is cut).
fn frame(v5: bool, messages: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = vec![u8::from(v5)];
    for m in messages {
        bytes.push(m.len() as u8);
        bytes.extend_from_slice(m);
    }
    bytes
}

fn unframe(input: &[u8]) -> (bool, Vec<&[u8]>) {
    let Some((&flags, mut rest)) = input.split_first() else { return (false, Vec::new()) };
    let mut messages = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let (m, tail) = tail.split_at(usize::from(len).min(tail.len()));
        messages.push(m);
        rest = tail;
    }
    (flags & 1 == 1, messages)
}

#[test]
fn websocket_channels() {
    let size = br#"{"Width":80,"Height":24}"#;
    let exec =
        vec![message(channel::STDIN, b"ls -l\n"), message(channel::RESIZE, size), message(channel::STDIN, b""), message(channel::CLOSE, &[channel::STDIN])];
    let split = vec![message(channel::RESIZE, br#"{"Width":1"#), message(channel::RESIZE, br#"20,"Height":40}"#), message(channel::STDOUT, b"x")];
    Target::new("websocket_channels").seed("exec", frame(true, &exec)).seed("split-resize", frame(false, &split)).run(|input| {
        let (v5, messages) = unframe(input);
        let mut resizes = ResizeStream::default();
        for &data in &messages {
            match channel_message(data, v5) {
                ChannelMessage::Stdin(payload) => assert_eq!((data[0], payload), (channel::STDIN, &data[1..])),
                ChannelMessage::Resize(payload) => {
                    assert_eq!((data[0], payload), (channel::RESIZE, &data[1..]));
                    resizes.feed(payload);
                    assert!(resizes.pending() <= 4096, "the resize buffer grew to {}", resizes.pending());
                }
                ChannelMessage::CloseStdin => assert!(v5 && data.starts_with(&[channel::CLOSE, channel::STDIN])),
                ChannelMessage::Ignored => assert!(data.is_empty() || ![channel::STDIN, channel::RESIZE].contains(&data[0])),
            }
        }
        // Garbage left open (`{"a":"` swallows what follows as a string)
        // may eat well-formed messages until the buffer's bound drops it,
        // never more.
        let wanted = TermSize { width: 80, height: 24 };
        let most = 4096 / size.len() + 3;
        let through = (1..=most).find(|_| resizes.feed(size).contains(&wanted));
        assert!(through.is_some(), "{most} well-formed resizes in a row were all lost after this traffic");
    });
}
