//! A stream that shows every byte it carries to an observer, on its way through: the one place where
//! reads and (vectored) writes are intercepted, for byte metrics and for capture taps alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sees the bytes of one connection side: `read` what came from the peer, `written` what went to it.
pub trait Observer {
    fn read(&mut self, bytes: &[u8]);
    fn written(&mut self, bytes: &[u8]);

    /// Whether what was read so far must not go on: the read that made this true fails instead of
    /// handing its bytes over, so a relay stops before forwarding them.
    fn halted(&self) -> bool {
        false
    }

    /// Whether the connection is to be given up (shed to make room in the memory budget), asked before
    /// each read and write; if not, `cx` is to be woken when it is. When it is, the bytes to send the peer
    /// first, if any (its listener's refusal). `reading` says which side asks.
    fn poll_cut_off(&mut self, _cx: &mut Context<'_>, _reading: bool) -> Option<&'static [u8]> {
        None
    }
}

/// The error a cut-off connection's reads and writes fail with.
fn cut_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "shed: the memory budget had no room for new connections, and this one was idle the longest",
    )
}

pub struct ObservedIo<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> ObservedIo<S, O> {
    pub fn new(inner: S, observer: O) -> Self {
        ObservedIo { inner, observer }
    }

    pub fn observer(&self) -> &O {
        &self.observer
    }

    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    pub fn into_observer(self) -> O {
        self.observer
    }

    /// The stream and its observer, both borrowed: for code that moves the stream's bytes without
    /// reading them (splice) and tells the observer what it moved.
    pub fn parts_mut(&mut self) -> (&mut S, &mut O) {
        (&mut self.inner, &mut self.observer)
    }

    pub fn into_parts(self) -> (S, O) {
        (self.inner, self.observer)
    }
}

// Writable too: a cut-off read may send the observer's last words first.
impl<S: AsyncRead + AsyncWrite + Unpin, O: Observer + Unpin> AsyncRead for ObservedIo<S, O> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        if let Some(last_words) = this.observer.poll_cut_off(cx, true) {
            if !last_words.is_empty() {
                // One write, as far as the socket takes it: a best effort before the close.
                let _ = Pin::new(&mut this.inner).poll_write(cx, last_words);
            }
            return Poll::Ready(Err(cut_off()));
        }
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                this.observer.read(fresh);
                if this.observer.halted() {
                    return Poll::Ready(Err(io::Error::other("halted by the stream's observer")));
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin, O: Observer + Unpin> AsyncWrite for ObservedIo<S, O> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.observer.poll_cut_off(cx, false).is_some() {
            return Poll::Ready(Err(cut_off()));
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.observer.written(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.observer.poll_cut_off(cx, false).is_some() {
            return Poll::Ready(Err(cut_off()));
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            // Exactly the n bytes written, which may end inside any of the slices.
            let mut left = n;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(buf.len());
                this.observer.written(&buf[..take]);
                left -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Seen {
        read: Vec<u8>,
        written: Vec<u8>,
    }

    impl Observer for Seen {
        fn read(&mut self, bytes: &[u8]) {
            self.read.extend_from_slice(bytes);
        }
        fn written(&mut self, bytes: &[u8]) {
            self.written.extend_from_slice(bytes);
        }
    }

    #[tokio::test]
    async fn sees_exactly_what_passes_each_way() {
        let (ours, mut peer) = tokio::io::duplex(64);
        let mut io = ObservedIo::new(ours, Seen::default());
        peer.write_all(b"in").await.unwrap();
        let mut two = [0u8; 2];
        io.read_exact(&mut two).await.unwrap();
        io.write_all(b"out").await.unwrap();
        let seen = io.into_observer();
        assert_eq!(
            (&seen.read[..], &seen.written[..]),
            (&b"in"[..], &b"out"[..])
        );
    }
}
