//! A client-streaming call's chunks (an archive to import, a tar for `cp`)
//! as one byte stream for the blocking work that reads it, fed as they
//! arrive: nothing is buffered beyond a few chunks.

use tokio::sync::mpsc;
use tonic::Streaming;

type Chunk = std::io::Result<Vec<u8>>;

/// Chunks in flight between the stream and the reader.
const IN_FLIGHT: usize = 16;

/// A reader of the chunks, and the sender [`feed`] fills.
pub(super) fn channel() -> (mpsc::Sender<Chunk>, ChunkReader) {
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    (tx, ChunkReader { rx, chunk: Vec::new(), at: 0 })
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

/// The client's chunks as one byte stream (blocking reads, for the
/// blocking pool).
pub(super) struct ChunkReader {
    rx: mpsc::Receiver<Chunk>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(chunk) => (self.chunk, self.at) = (chunk?, 0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
