//! A client-streaming call's chunks (an archive to import, a tar for `cp`)
//! as one byte stream for the blocking work that reads it, fed as they
//! arrive: nothing is buffered beyond a few chunks.

use berth_api::chunks::ChunkReader;
use tokio::sync::mpsc;
use tonic::Streaming;

type Chunk = std::io::Result<Vec<u8>>;

/// Chunks in flight between the stream and the reader.
const IN_FLIGHT: usize = 16;

/// A reader of the chunks, and the sender [`feed`] fills.
pub(super) fn channel() -> (mpsc::Sender<Chunk>, ChunkReader) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    (tx, ChunkReader::new(rx))
}

/// Sends `first` and the rest of the client's messages (their bytes, by
/// `data`) to the reader, until the client ends its stream or the reader
/// stops early (its own result then says why). A broken client stream
/// reaches the reader as an error.
pub(super) async fn feed<M>(first: M, stream: &mut Streaming<M>, tx: mpsc::Sender<Chunk>, data: impl Fn(M) -> Vec<u8>) {
    let mut next = Some(first);
    while let Some(message) = next.take() {
        if tx.send(Ok(data(message))).await.is_err() {
            break;
        }
        match stream.message().await {
            Ok(more) => next = more,
            Err(status) => {
                let _ = tx.send(Err(std::io::Error::other(format!("the client's stream broke: {}", status.message())))).await;
            }
        }
    }
}
