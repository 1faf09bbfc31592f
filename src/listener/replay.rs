//! A connection that first replays bytes already read from it.
//!
//! The request-head layer reads each head itself (to bound the time it takes) and must then
//! give the bytes to pingora's parser. A plain TCP stream has pingora's own rewind buffer
//! for that; a TLS stream does not, so it is wrapped in a [`Replay`], which serves the
//! saved bytes first and then reads from the stream. Everything else (writes, TLS and
//! socket details, ids) is the inner stream's.

use async_trait::async_trait;
use pingora_core::protocols::{Peek, Stream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Implements pingora's connection-detail traits (shutdown, id, TLS details, timing, proxy
/// and socket digests) for a wrapper stream by handing every call to its `inner` stream.
/// The wrappers of this layer change how bytes flow, never what the connection is.
macro_rules! forward_details {
    ($wrapper:ty) => {
        #[async_trait::async_trait]
        impl pingora_core::protocols::Shutdown for $wrapper {
            async fn shutdown(&mut self) {
                self.inner.shutdown().await
            }
        }

        impl pingora_core::protocols::UniqueID for $wrapper {
            fn id(&self) -> pingora_core::protocols::UniqueIDType {
                self.inner.id()
            }
        }

        impl pingora_core::protocols::Ssl for $wrapper {
            fn get_ssl(&self) -> Option<&pingora_core::protocols::tls::TlsRef> {
                self.inner.get_ssl()
            }

            fn get_ssl_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora_core::protocols::tls::SslDigest>> {
                self.inner.get_ssl_digest()
            }

            fn selected_alpn_proto(&self) -> Option<pingora_core::protocols::ALPN> {
                self.inner.selected_alpn_proto()
            }
        }

        impl pingora_core::protocols::GetTimingDigest for $wrapper {
            fn get_timing_digest(&self) -> Vec<Option<pingora_core::protocols::TimingDigest>> {
                self.inner.get_timing_digest()
            }

            fn get_read_pending_time(&self) -> std::time::Duration {
                self.inner.get_read_pending_time()
            }

            fn get_write_pending_time(&self) -> std::time::Duration {
                self.inner.get_write_pending_time()
            }
        }

        impl pingora_core::protocols::GetProxyDigest for $wrapper {
            fn get_proxy_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora_core::protocols::raw_connect::ProxyDigest>> {
                self.inner.get_proxy_digest()
            }

            fn set_proxy_digest(
                &mut self,
                digest: pingora_core::protocols::raw_connect::ProxyDigest,
            ) {
                self.inner.set_proxy_digest(digest)
            }
        }

        impl pingora_core::protocols::GetSocketDigest for $wrapper {
            fn get_socket_digest(
                &self,
            ) -> Option<std::sync::Arc<pingora_core::protocols::SocketDigest>> {
                self.inner.get_socket_digest()
            }

            fn set_socket_digest(&mut self, digest: pingora_core::protocols::SocketDigest) {
                self.inner.set_socket_digest(digest)
            }
        }
    };
}
pub(super) use forward_details;

/// `Peek` for a wrapper that has nothing of its own to show: the inner stream's.
macro_rules! forward_peek {
    ($wrapper:ty) => {
        #[async_trait::async_trait]
        impl pingora_core::protocols::Peek for $wrapper {
            async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
                self.inner.try_peek(buf).await
            }
        }
    };
}
pub(super) use forward_peek;

/// `AsyncWrite` for a wrapper whose writes go straight to its `inner` stream.
macro_rules! forward_write {
    ($wrapper:ty) => {
        impl tokio::io::AsyncWrite for $wrapper {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
pub(super) use forward_write;

#[derive(Debug)]
pub struct Replay {
    saved: Vec<u8>,
    pos: usize,
    inner: Stream,
}

impl Replay {
    pub fn new(saved: &[u8], inner: Stream) -> Replay {
        Replay {
            saved: saved.to_vec(),
            pos: 0,
            inner,
        }
    }

    /// The inner stream once every saved byte was read, else the replay itself.
    pub fn unwrap_drained(self) -> Result<Stream, Replay> {
        if self.pos >= self.saved.len() {
            Ok(self.inner)
        } else {
            Err(self)
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.saved.len() {
            let n = (this.saved.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.saved[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

forward_write!(Replay);

forward_details!(Replay);

#[async_trait]
impl Peek for Replay {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.pos < self.saved.len() {
            let n = (self.saved.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.saved[self.pos..self.pos + n]);
            return Ok(true);
        }
        self.inner.try_peek(buf).await
    }
}
