//! A SPDY session: one task reads frames and routes them to streams, one
//! task writes the frames every stream queues. Streams the peer opens
//! arrive on a channel, already answered with SYN_REPLY; this side can
//! open streams too (the tests' client does).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
    task::JoinHandle,
};

use super::frame::{read_frame, Frame, HeaderDecoder, HeaderEncoder, Headers, FLAG_FIN};

/// Data frames carry at most this much (the spec allows 16 MiB; smaller
/// frames keep one busy stream from starving the others).
const MAX_DATA_FRAME: usize = 32 * 1024;

/// One stream: its headers, the data the peer sends on it (the channel
/// closes at the peer's FIN or RST), and this side's writer.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub data: mpsc::Receiver<Vec<u8>>,
    pub writer: StreamWriter,
}

#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Frame>,
}

impl StreamWriter {
    /// Queues `data`; false once the connection is gone.
    pub async fn send(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(MAX_DATA_FRAME) {
            if self.out.send(Frame::Data { stream_id: self.id, flags: 0, data: chunk.to_vec() }).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Half-closes this side of the stream (FIN).
    pub async fn finish(&self) {
        let _ = self.out.send(Frame::Data { stream_id: self.id, flags: FLAG_FIN, data: Vec::new() }).await;
    }

    /// Aborts the stream (RST_STREAM, status CANCEL).
    pub async fn reset(&self) {
        let _ = self.out.send(Frame::RstStream { stream_id: self.id, status: 5 }).await;
    }
}

type Routes = Arc<Mutex<HashMap<u32, mpsc::Sender<Vec<u8>>>>>;

/// This side of a session.
#[derive(Clone)]
pub struct Connection {
    out: mpsc::Sender<Frame>,
    routes: Routes,
    next_id: Arc<AtomicU32>,
}

impl Connection {
    /// Opens a stream (client side: odd ids).
    pub async fn open(&self, headers: Headers) -> std::io::Result<Stream> {
        let id = self.next_id.fetch_add(2, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        self.routes.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let frame = Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, flags: 0, headers: headers.clone() };
        self.out.send(frame).await.map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(Stream { id, headers, data: rx, writer: StreamWriter { id, out: self.out.clone() } })
    }

    /// Tells the peer this side is done (GOAWAY) and stops writing.
    pub async fn go_away(&self) {
        let _ = self.out.send(Frame::GoAway { last_good_stream_id: 0, status: 0 }).await;
    }
}

/// Starts a session on `io`. `server` picks stream-id parity for streams
/// this side opens. Returns this side's handle, the streams the peer opens,
/// and the task that ends when the connection does (with its error, if
/// the peer sent something malformed).
pub fn start<T>(io: T, server: bool) -> (Connection, mpsc::Receiver<Stream>, JoinHandle<std::io::Result<()>>)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(256);
    let (incoming_tx, incoming_rx) = mpsc::channel::<Stream>(16);
    let routes: Routes = Arc::default();
    let conn = Connection { out: out_tx.clone(), routes: routes.clone(), next_id: Arc::new(AtomicU32::new(if server { 2 } else { 1 })) };
    let write_task = tokio::spawn(async move {
        let mut encoder = HeaderEncoder::default();
        while let Some(frame) = out_rx.recv().await {
            let last = matches!(frame, Frame::GoAway { .. });
            if writer.write_all(&frame.encode(&mut encoder)).await.is_err() {
                break;
            }
            if out_rx.is_empty() && writer.flush().await.is_err() {
                break;
            }
            if last {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let task = tokio::spawn(async move {
        let mut decoder = HeaderDecoder::default();
        let result = loop {
            let frame = match read_frame(&mut reader, &mut decoder).await {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            match frame {
                Frame::SynStream { stream_id, flags, headers, .. } => {
                    let (tx, rx) = mpsc::channel(64);
                    if flags & FLAG_FIN == 0 {
                        routes.lock().unwrap_or_else(|e| e.into_inner()).insert(stream_id, tx);
                    }
                    let _ = out_tx.send(Frame::SynReply { stream_id, flags: 0, headers: Vec::new() }).await;
                    let stream = Stream { id: stream_id, headers, data: rx, writer: StreamWriter { id: stream_id, out: out_tx.clone() } };
                    if incoming_tx.send(stream).await.is_err() {
                        // Nobody takes new streams any more: refuse it.
                        let _ = out_tx.send(Frame::RstStream { stream_id, status: 3 }).await;
                    }
                }
                Frame::Data { stream_id, flags, data } => {
                    let route = routes.lock().unwrap_or_else(|e| e.into_inner()).get(&stream_id).cloned();
                    if let Some(tx) = route {
                        if !data.is_empty() {
                            let _ = tx.send(data).await;
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        routes.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream_id);
                    }
                }
                Frame::SynReply { stream_id, flags, .. } | Frame::Headers { stream_id, flags, .. } => {
                    if flags & FLAG_FIN != 0 {
                        routes.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    routes.lock().unwrap_or_else(|e| e.into_inner()).remove(&stream_id);
                }
                // A ping from the peer (ids of the other parity) is echoed.
                Frame::Ping { id } if (id % 2 == 1) == server => {
                    let _ = out_tx.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break Ok(()),
                Frame::Ping { .. } | Frame::Settings { .. } | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
            }
        };
        // The connection is over: every stream's data ends here.
        routes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        drop(out_tx);
        // The writer goes on until the last stream writer is dropped, so
        // what the application still sends (an exit status) goes out.
        drop(write_task);
        result
    });
    (conn, incoming_rx, task)
}
