//! Copying both ways between two streams with buffers that exist only while data flows.
//!
//! `tokio::io::copy_bidirectional` keeps one buffer per direction for the life of the connection. That is
//! the right trade for one big transfer and the wrong one for a sidecar: a pod's connection pools hold
//! hundreds of keep-alive connections that are idle almost all the time, and each would keep its buffers.
//! Here a direction carrying messages reads them into its thread's scratch buffer and writes them on at
//! once ([`super::small_reads`]), so an idle connection holds no buffer at all. A read that fills the
//! scratch buffer means bulk data, and the direction moves to a large heap buffer, freed when the direction
//! runs dry after a small read (the traffic is back to messages), so a bulk transfer keeps its buffer
//! between bursts instead of reallocating it each time. Half-close works as in tokio's: a side's end of
//! stream is passed on as a write shutdown to the other, whose direction keeps flowing.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::small_reads::{with_scratch, Leftover, SMALL};
use crate::budget::{self, Purpose, Reservation};

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
#[derive(Default)]
struct Direction {
    /// The bulk buffer and its share of the memory budget.
    bulk: Option<(Box<[u8]>, Reservation)>,
    /// Bytes of the last bulk read still to be written: `start..end` of `bulk`.
    start: usize,
    end: usize,
    /// Bytes of the last small read the writer has not taken yet.
    leftover: Leftover,
    /// The last read filled at least a small read's worth: bulk data, whose buffer stays for the next burst.
    last_read_large: bool,
    reader_done: bool,
    needs_flush: bool,
    shut_down: bool,
    copied: u64,
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
            ready!(self.poll_write_pending(cx, writer))?;
            if self.reader_done {
                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.shut_down = true;
                self.bulk = None;
                return Poll::Ready(Ok(self.copied));
            }
            let read = if self.bulk.is_some() {
                self.poll_read_bulk(cx, reader)
            } else {
                with_scratch(|scratch| self.poll_pass_small(cx, reader, writer, scratch))
            };
            if read?.is_pending() {
                if !self.leftover.is_empty() {
                    // The writer is not ready for the rest of a small read.
                    return Poll::Pending;
                }
                // Nothing to read: what was written must reach the peer before waiting, and after small
                // messages the bulk buffer is no longer needed.
                if self.needs_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    self.needs_flush = false;
                }
                if !self.last_read_large {
                    self.bulk = None;
                }
                return Poll::Pending;
            }
        }
    }

    /// Writes what is left of the last read (of a bulk read, or of a small one).
    fn poll_write_pending<W>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            let pending = match &self.bulk {
                Some((bulk, _)) if self.start < self.end => &bulk[self.start..self.end],
                _ if !self.leftover.is_empty() => self.leftover.unwritten(),
                _ => return Poll::Ready(Ok(())),
            };
            let written = ready!(Pin::new(&mut *writer).poll_write(cx, pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if self.start < self.end {
                self.start += written;
            } else {
                self.leftover.wrote(written);
            }
            self.copied += written as u64;
            self.needs_flush = true;
        }
    }

    /// One read into the bulk buffer; its bytes are written by the next round.
    fn poll_read_bulk<R>(&mut self, cx: &mut Context<'_>, reader: &mut R) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let (bulk, _) = self.bulk.as_mut().expect("called with a bulk buffer");
        let mut read = ReadBuf::new(bulk);
        ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.start = 0;
        self.end = n;
        self.last_read_large = n >= SMALL;
        self.reader_done = n == 0;
        Poll::Ready(Ok(()))
    }

    /// One small read into the thread's `scratch` buffer, written on as far as the writer takes it at once;
    /// the rest is kept in `leftover`. A read that fills the buffer brings the bulk buffer in for the next
    /// reads.
    fn poll_pass_small<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        scratch: &mut [u8; SMALL],
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut read = ReadBuf::new(scratch);
        ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.last_read_large = n == SMALL;
        if n == 0 {
            self.reader_done = true;
            return Poll::Ready(Ok(()));
        }
        if n == SMALL {
            // Without budget to spare, the direction goes on with small reads: slower, never stopped.
            if let Some(share) = budget::process().reserve(Purpose::RelayBuffer, BULK) {
                self.bulk = Some((vec![0; BULK].into_boxed_slice(), share));
            }
        }
        let mut offset = 0;
        while offset < n {
            match Pin::new(&mut *writer).poll_write(cx, &scratch[offset..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => {
                    offset += written;
                    self.copied += written as u64;
                    self.needs_flush = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // The scratch buffer is the next connection's: the rest waits in a copy of our own.
                    self.leftover.keep(&scratch[offset..n]);
                    return Poll::Pending;
                }
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
        relay_through_pipes(len_ab, len_ba, 8 * 1024).await
    }

    /// Relays between two in-memory pipes of `capacity` bytes each: a small capacity makes the writers
    /// take part of a read and leave the rest for later.
    async fn relay_through_pipes(len_ab: usize, len_ba: usize, capacity: usize) {
        let (mut client, mut near) = tokio::io::duplex(capacity);
        let (mut far, mut server) = tokio::io::duplex(capacity);
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
    async fn bytes_a_slow_writer_leaves_are_kept_and_arrive_whole_and_in_order() {
        for (ab, ba) in [(5, 3), (SMALL - 1, 700), (SMALL + 1, 1), (2 * BULK + 3, 9)] {
            relay_through_pipes(ab, ba, 7).await;
        }
    }

    #[tokio::test]
    async fn a_small_read_the_writer_takes_in_part_is_held_until_written_then_freed() {
        let (mut client, mut near) = tokio::io::duplex(1024);
        let (mut far, mut server) = tokio::io::duplex(10);
        let mut direction = Direction::default();
        client.write_all(b"0123456789abcdefghij").await.unwrap();
        assert!(poll_now(&mut direction, &mut near, &mut far).is_pending());
        assert_eq!(direction.leftover.unwritten(), b"abcdefghij");
        let mut got = [0u8; 10];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"0123456789");
        assert!(poll_now(&mut direction, &mut near, &mut far).is_pending());
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"abcdefghij");
        assert_eq!(
            direction.leftover.capacity(),
            0,
            "a direction whose bytes are all written keeps no copy"
        );
    }

    /// An idle connection's relay holds no read buffer: its task is only the two directions' bookkeeping
    /// (it held 4 KiB of buffers when each direction had its own small buffer).
    #[test]
    fn the_relay_state_of_a_connection_holds_no_read_buffer() {
        fn future_size<F: std::future::Future>(
            _: fn(&'static mut tokio::net::TcpStream, &'static mut tokio::net::TcpStream) -> F,
        ) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(copy_bidirectional::<tokio::net::TcpStream, tokio::net::TcpStream>);
        assert!(size < SMALL / 4, "the relay's state is {size} bytes");
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
