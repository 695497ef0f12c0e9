//! The admin API's byte streams between async and blocking code, by
//! berthd and by berthctl alike: bytes written on a blocking thread (a tar
//! being built, an archive being saved) cut into chunk messages for a
//! stream ([`ChunkWriter`]), and a stream's chunks read back as one byte
//! stream by a blocking reader (an unpacker: [`ChunkReader`]).

use std::io::Write;

use tokio::sync::mpsc;

/// The size of a chunk message's bytes.
pub const CHUNK: usize = 1 << 20;

/// A `Write` that sends every full chunk as one message (`wrap` makes the
/// message of the bytes) and the rest at `flush`. Writes fail, with
/// `gone` as the reason, once the receiving side has gone.
pub struct ChunkWriter<T> {
    tx: mpsc::Sender<T>,
    wrap: fn(Vec<u8>) -> T,
    gone: &'static str,
    buf: Vec<u8>,
}

impl<T> ChunkWriter<T> {
    pub fn new(tx: mpsc::Sender<T>, wrap: fn(Vec<u8>) -> T, gone: &'static str) -> Self {
        Self { tx, wrap, gone, buf: Vec::with_capacity(CHUNK) }
    }
}

impl<T> Write for ChunkWriter<T> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send((self.wrap)(chunk)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, self.gone))
    }
}

/// Chunks of a stream as one byte stream, for blocking reads. An `Err`
/// chunk (the stream broke) fails the read; the sender gone is the end.
pub struct ChunkReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<std::io::Result<Vec<u8>>>) -> Self {
        Self { rx, chunk: Vec::new(), at: 0 }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_whole_in_chunks_of_the_chunk_size() {
        let (tx, mut rx) = mpsc::channel(8);
        let sent: Vec<u8> = (0..(2 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn({
            let sent = sent.clone();
            move || {
                let mut w = ChunkWriter::new(tx, |data| data, "gone");
                w.write_all(&sent).unwrap();
                w.flush().unwrap();
            }
        });
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            sizes.push(chunk.len());
            got.extend(chunk);
        }
        writer.join().unwrap();
        assert_eq!(sizes, [CHUNK, CHUNK, 17]);
        assert_eq!(got, sent);
    }

    #[test]
    fn a_receiver_gone_fails_the_write_with_the_reason() {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx, |data| data, "the client left");
        let e = w.write_all(&vec![0; CHUNK]).unwrap_err();
        assert_eq!((e.kind(), e.to_string().as_str()), (std::io::ErrorKind::BrokenPipe, "the client left"));
    }
}
