//! Makes a unix-socket gRPC server answer every conforming client.
//!
//! [`AuthorityRepair`] wraps an accepted connection. The server reads the
//! client's bytes through it; header blocks whose `:authority` is a socket
//! path (what grpc-core and grpc-java send) are re-encoded with
//! `localhost`, which h2 accepts, and nothing else changes. The server's
//! writes go straight to the socket. See `rewriter` for how HPACK state is
//! kept right, and `authority` for which values are repaired.

mod authority;
mod rewriter;

use std::{
    io,
    pin::Pin,
    task::{ready, Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

pub use authority::{repair, REPLACEMENT};
use rewriter::Rewriter;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A connection whose client-to-server bytes pass through the rewriter.
pub struct AuthorityRepair<S> {
    inner: S,
    rewriter: Rewriter,
    /// Rewritten bytes the server has not read yet.
    ready: Vec<u8>,
    /// How much of `ready` the server has read.
    ready_at: usize,
    chunk: Box<[u8]>,
    eof: bool,
}

impl<S> AuthorityRepair<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, rewriter: Rewriter::default(), ready: Vec::new(), ready_at: 0, chunk: vec![0; READ_CHUNK].into_boxed_slice(), eof: false }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                this.eof = true;
                this.rewriter.finish(&mut this.ready);
            } else {
                this.rewriter.push(chunk.filled(), &mut this.ready);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for AuthorityRepair<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
