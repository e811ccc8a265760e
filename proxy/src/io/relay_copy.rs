//! Copying both ways between two streams with buffers that exist only while data flows.
//!
//! `tokio::io::copy_bidirectional` keeps one buffer per direction for the life of the connection. That is
//! the right trade for one big transfer and the wrong one for a sidecar: a pod's connection pools hold
//! hundreds of keep-alive connections that are idle almost all the time, and each would keep its buffers.
//! Here every read goes first into a small buffer that is part of the connection's task; a read that fills
//! it means bulk data, and the direction moves to a large heap buffer. The large buffer is freed when the
//! direction runs dry after a small read (the traffic is back to messages), so an idle keep-alive connection
//! holds none, while a bulk transfer keeps its buffer between bursts instead of reallocating it each time. Half-close works as in tokio's: a side's end of stream is passed on as
//! a write shutdown to the other, whose direction keeps flowing.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::budget::{self, Purpose, Reservation};

/// Bytes read at a time while a direction carries small messages (requests, responses, pings). Part of the
/// task, twice per relay, so kept small.
const SMALL: usize = 2 * 1024;
/// Bytes read at a time while a direction carries bulk data: what a loopback TCP socket hands over in one
/// read, a quarter of the syscalls of tokio's default 8 KiB on large transfers.
pub const BULK: usize = 64 * 1024;

/// Copies `a` → `b` and `b` → `a` until both directions have ended; returns the bytes each way.
/// The first error from either side ends both.
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut a_to_b = Direction::default();
    let mut b_to_a = Direction::default();
    poll_fn(|cx| {
        let a_to_b = a_to_b.poll(cx, &mut *a, &mut *b)?;
        let b_to_a = b_to_a.poll(cx, &mut *b, &mut *a)?;
        let (Poll::Ready(sent), Poll::Ready(received)) = (a_to_b, b_to_a) else {
            return Poll::Pending;
        };
        Poll::Ready(Ok((sent, received)))
    })
    .await
}

/// One direction: read, write what was read, and at the reader's end of stream shut the writer down.
struct Direction {
    small: [u8; SMALL],
    /// The bulk buffer and its share of the memory budget.
    bulk: Option<(Box<[u8]>, Reservation)>,
    /// Whether the bytes waiting to be written are in `bulk` (else in `small`).
    pending_in_bulk: bool,
    /// The bytes waiting to be written: `start..end` of their buffer.
    start: usize,
    end: usize,
    /// The last read was a small one: the bulk buffer can go once nothing is left to read.
    last_read_small: bool,
    reader_done: bool,
    needs_flush: bool,
    shut_down: bool,
    copied: u64,
}

impl Default for Direction {
    fn default() -> Self {
        Direction {
            small: [0; SMALL],
            bulk: None,
            pending_in_bulk: false,
            start: 0,
            end: 0,
            last_read_small: true,
            reader_done: false,
            needs_flush: false,
            shut_down: false,
            copied: 0,
        }
    }
}

impl Direction {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.shut_down {
            return Poll::Ready(Ok(self.copied));
        }
        loop {
            if self.start == self.end && !self.reader_done {
                match self.poll_fill(cx, reader) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => {
                        // Nothing to read: what was written must reach the peer before waiting, and
                        // after small messages the bulk buffer is no longer needed.
                        if self.needs_flush {
                            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                            self.needs_flush = false;
                        }
                        if self.last_read_small {
                            self.bulk = None;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.start < self.end {
                let pending = match (&self.bulk, self.pending_in_bulk) {
                    (Some((bulk, _)), true) => &bulk[self.start..self.end],
                    _ => &self.small[self.start..self.end],
                };
                let written = ready!(Pin::new(&mut *writer).poll_write(cx, pending))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.start += written;
                self.copied += written as u64;
                self.needs_flush = true;
            }
            if self.reader_done {
                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.shut_down = true;
                self.bulk = None;
                return Poll::Ready(Ok(self.copied));
            }
        }
    }

    /// Reads into the bulk buffer when there is one, else into the small one; a read that fills the small
    /// buffer brings the bulk buffer in for the next reads.
    fn poll_fill<R>(&mut self, cx: &mut Context<'_>, reader: &mut R) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let in_bulk = self.bulk.is_some();
        let buffer: &mut [u8] = match &mut self.bulk {
            Some((bulk, _)) => bulk,
            None => &mut self.small,
        };
        let mut read = ReadBuf::new(buffer);
        ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.pending_in_bulk = in_bulk;
        self.start = 0;
        self.end = n;
        self.last_read_small = n < SMALL;
        if n == 0 {
            self.reader_done = true;
        } else if !in_bulk && n == SMALL {
            // Without budget to spare, the direction goes on with its small buffer: slower, never stopped.
            if let Some(share) = budget::process().reserve(Purpose::RelayBuffer, BULK) {
                self.bulk = Some((vec![0; BULK].into_boxed_slice(), share));
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A payload that is not all one byte, so a misplaced chunk shows.
    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    async fn relay_through(len_ab: usize, len_ba: usize) {
        let (mut client, mut near) = tokio::io::duplex(8 * 1024);
        let (mut far, mut server) = tokio::io::duplex(8 * 1024);
        let relay = tokio::spawn(async move { copy_bidirectional(&mut near, &mut far).await });
        let (to_server, to_client) = (payload(len_ab), payload(len_ba));
        let (expect_server, expect_client) = (to_server.clone(), to_client.clone());
        let client_side = tokio::spawn(async move {
            client.write_all(&to_server).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let server_side = tokio::spawn(async move {
            let mut got = Vec::new();
            // The client's half-close arrives as end of stream; the server answers after it.
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&to_client).await.unwrap();
            server.shutdown().await.unwrap();
            got
        });
        assert!(server_side.await.unwrap() == expect_server);
        assert!(client_side.await.unwrap() == expect_client);
        assert_eq!(
            relay.await.unwrap().unwrap(),
            (len_ab as u64, len_ba as u64)
        );
    }

    #[tokio::test]
    async fn small_and_bulk_data_arrive_whole_both_ways_after_a_half_close() {
        for (ab, ba) in [
            (0, 0),
            (1, 0),
            (5, 3),
            (SMALL, SMALL),
            (SMALL + 1, 1),
            (3 * BULK + 17, 2 * BULK),
        ] {
            relay_through(ab, ba).await;
        }
    }

    #[tokio::test]
    async fn bulk_data_brings_the_bulk_buffer_and_a_small_message_then_idleness_frees_it() {
        let (mut client, mut near) = tokio::io::duplex(256 * 1024);
        let (mut far, mut server) = tokio::io::duplex(256 * 1024);
        let mut direction = Direction::default();
        let bulk = payload(SMALL * 4 + 10);
        client.write_all(&bulk).await.unwrap();
        assert!(poll_now(&mut direction, &mut near, &mut far).is_pending());
        // The last read of the burst took more than a small buffer's worth: kept for the next burst.
        assert!(direction.bulk.is_some());
        client.write_all(b"ping").await.unwrap();
        assert!(poll_now(&mut direction, &mut near, &mut far).is_pending());
        assert!(
            direction.bulk.is_none(),
            "an idle direction after a small message holds no bulk buffer"
        );
        let mut got = vec![0; bulk.len() + 4];
        server.read_exact(&mut got).await.unwrap();
        assert!(got[..bulk.len()] == bulk[..] && &got[bulk.len()..] == b"ping");
    }

    /// Polls a direction until it has nothing more to do for now (its reader is still open: pending).
    fn poll_now(
        direction: &mut Direction,
        near: &mut tokio::io::DuplexStream,
        far: &mut tokio::io::DuplexStream,
    ) -> Poll<io::Result<u64>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        direction.poll(&mut cx, near, far)
    }
}
