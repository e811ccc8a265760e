//! Relaying between two TCP sockets with `splice(2)`, for streams nothing needs to read.
//!
//! A read/write relay copies every byte twice more than the direct path does (kernel to the relay's
//! buffer, and back), which caps bulk transfers near half of direct on a loopback. `splice` moves the
//! pages through a pipe instead: socket → pipe → socket, no copy into user space. It only applies where
//! the sidecar looks at nothing: capture off, or an opaque stream (TLS that tls-out does not intercept)
//! without payload copies.
//!
//! Like [`super::copy_bidirectional`], a direction starts with small reads in user space, into the
//! thread's scratch buffer ([`super::small_reads`]): most connections carry small messages and sit idle in
//! between, and a pipe costs two file descriptors and a kernel buffer. A read that fills the scratch buffer
//! means bulk data: the direction takes a pipe, and gives it back once it runs dry after a small read.
//! Half-close is passed on as a write shutdown; the first error from either side ends both.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;

use super::small_reads::{with_scratch, Leftover, SMALL};
use crate::budget::{self, Purpose, Reservation};
/// Bytes moved per `splice` call: a default pipe's capacity (16 pages).
const PIPE_CHUNK: usize = 64 * 1024;

/// Bytes moved each way, reported as they go (for the relayed-bytes metric and the stream record).
pub trait SpliceCounter {
    /// `n` more bytes went from the first socket to the second.
    fn forward(&mut self, n: usize);
    /// `n` more bytes went from the second socket to the first.
    fn backward(&mut self, n: usize);
}

impl<T: SpliceCounter + ?Sized> SpliceCounter for &mut T {
    fn forward(&mut self, n: usize) {
        (**self).forward(n);
    }

    fn backward(&mut self, n: usize) {
        (**self).backward(n);
    }
}

/// Two counters told the same bytes (the relayed-bytes metric and a stream record's counts).
impl<A: SpliceCounter, B: SpliceCounter> SpliceCounter for (A, B) {
    fn forward(&mut self, n: usize) {
        self.0.forward(n);
        self.1.forward(n);
    }

    fn backward(&mut self, n: usize) {
        self.0.backward(n);
        self.1.backward(n);
    }
}

/// Copies `a` → `b` and `b` → `a` until both directions have ended; returns the bytes each way.
pub async fn splice_bidirectional(
    a: &mut TcpStream,
    b: &mut TcpStream,
    counter: &mut impl SpliceCounter,
) -> io::Result<(u64, u64)> {
    // Read halves, because their `poll_read` knows what `try_read` does not: a read shorter than the
    // buffer drained the socket, so the next poll waits for readiness instead of calling `recv` once more
    // only to hear `EAGAIN` (one system call per small message each way, which the minimal relay does not
    // make).
    let (mut a_reader, a_writer) = a.split();
    let (mut b_reader, b_writer) = b.split();
    let mut a_to_b = Direction::default();
    let mut b_to_a = Direction::default();
    poll_fn(|cx| {
        let forward = a_to_b.poll(cx, &mut a_reader, b_writer.as_ref(), &mut |n| {
            counter.forward(n)
        })?;
        let backward = b_to_a.poll(cx, &mut b_reader, a_writer.as_ref(), &mut |n| {
            counter.backward(n)
        })?;
        let (Poll::Ready(sent), Poll::Ready(received)) = (forward, backward) else {
            return Poll::Pending;
        };
        Poll::Ready(Ok((sent, received)))
    })
    .await
}

/// The two ends of a pipe and the memory budget's share for what the kernel buffers in it.
struct Pipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    _share: Reservation,
}

impl Pipe {
    /// A pipe when the budget and the descriptor limit allow one; without, the direction stays in user
    /// space (slower, never stopped).
    fn open() -> Option<Pipe> {
        let share = budget::process().reserve(Purpose::RelayBuffer, PIPE_CHUNK)?;
        let (read_end, write_end) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?;
        Some(Pipe {
            read_end,
            write_end,
            _share: share,
        })
    }
}

/// One direction: move what was read, and at the reader's end of stream shut the writer down.
#[derive(Default)]
struct Direction {
    /// Bytes of the last small read the writer has not taken yet.
    leftover: Leftover,
    pipe: Option<Pipe>,
    /// Bytes in the pipe still to be written.
    in_pipe: usize,
    /// The last read filled the scratch buffer or more: bulk data, whose pipe stays for the next burst.
    last_read_large: bool,
    reader_done: bool,
    shut_down: bool,
    copied: u64,
}

impl Direction {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut ReadHalf<'_>,
        writer: &TcpStream,
        count: &mut impl FnMut(usize),
    ) -> Poll<io::Result<u64>> {
        if self.shut_down {
            return Poll::Ready(Ok(self.copied));
        }
        loop {
            ready!(self.poll_write_pending(cx, writer))?;
            if self.reader_done {
                socket2::SockRef::from(writer).shutdown(Shutdown::Write)?;
                self.shut_down = true;
                self.pipe = None;
                return Poll::Ready(Ok(self.copied));
            }
            let read = match &self.pipe {
                Some(pipe) => {
                    let socket = reader.as_ref();
                    if socket.poll_read_ready(cx)?.is_pending() {
                        // Nothing to read: after small messages the pipe is no longer needed.
                        if !self.last_read_large {
                            self.pipe = None;
                        }
                        return Poll::Pending;
                    }
                    socket
                        .try_io(Interest::READABLE, || {
                            splice_once(socket, &pipe.write_end, PIPE_CHUNK)
                        })
                        .inspect(|&n| self.in_pipe = n)
                }
                None => ready!(with_scratch(
                    |scratch| self.poll_pass_small(cx, reader, writer, scratch)
                )),
            };
            let n = match read {
                Ok(n) => n,
                // Readiness was stale: poll again, which registers for the next wake-up.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            };
            self.last_read_large = n >= SMALL;
            if n == 0 {
                self.reader_done = true;
                continue;
            }
            count(n);
            if self.pipe.is_none() && n == SMALL {
                self.pipe = Pipe::open();
            }
        }
    }

    /// One small read into the thread's `scratch` buffer, written on as far as the writer takes it at once;
    /// the rest is kept in `leftover` for [`Direction::poll_write_pending`]. Returns the bytes read.
    fn poll_pass_small(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut ReadHalf<'_>,
        writer: &TcpStream,
        scratch: &mut [u8; SMALL],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(scratch);
        ready!(Pin::new(reader).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        Poll::Ready(self.write_small(writer, &scratch[..n]))
    }

    /// Writes `read` on as far as the writer takes it at once, keeping the rest in `leftover`.
    fn write_small(&mut self, writer: &TcpStream, read: &[u8]) -> io::Result<usize> {
        let n = read.len();
        let mut offset = 0;
        while offset < n {
            match writer.try_write(&read[offset..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    offset += written;
                    self.copied += written as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The scratch buffer is the next connection's: the rest waits in a copy of our own.
                    self.leftover.keep(&read[offset..n]);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Writes what the last read left (of a small read, or in the pipe).
    fn poll_write_pending(
        &mut self,
        cx: &mut Context<'_>,
        writer: &TcpStream,
    ) -> Poll<io::Result<()>> {
        while !self.leftover.is_empty() || self.in_pipe > 0 {
            ready!(writer.poll_write_ready(cx))?;
            let written = if !self.leftover.is_empty() {
                writer.try_write(self.leftover.unwritten())
            } else {
                let pipe = self.pipe.as_ref().expect("bytes in a pipe that exists");
                writer.try_io(Interest::WRITABLE, || {
                    splice_once(&pipe.read_end, writer, self.in_pipe)
                })
            };
            let n = match written {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if !self.leftover.is_empty() {
                self.leftover.wrote(n);
            } else {
                self.in_pipe -= n;
            }
            self.copied += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

/// One `splice` call that never blocks on the pipe; the socket is non-blocking already (tokio's).
fn splice_once(from: impl AsFd, to: impl AsFd, len: usize) -> io::Result<usize> {
    splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A payload that is not all one byte, so a misplaced chunk shows.
    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[derive(Default)]
    struct Counted {
        forward: u64,
        backward: u64,
    }

    impl SpliceCounter for Counted {
        fn forward(&mut self, n: usize) {
            self.forward += n as u64;
        }
        fn backward(&mut self, n: usize) {
            self.backward += n as u64;
        }
    }

    /// Two connected loopback sockets.
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (connected.unwrap(), accepted.unwrap().0)
    }

    async fn relay_through(len_ab: usize, len_ba: usize) {
        let (mut client, mut near) = socket_pair().await;
        let (mut far, mut server) = socket_pair().await;
        let relay = tokio::spawn(async move {
            let mut counted = Counted::default();
            let copied = splice_bidirectional(&mut near, &mut far, &mut counted).await;
            (copied.unwrap(), counted.forward, counted.backward)
        });
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
        assert!(
            server_side.await.unwrap() == expect_server,
            "{len_ab} bytes a → b"
        );
        assert!(
            client_side.await.unwrap() == expect_client,
            "{len_ba} bytes b → a"
        );
        let ((sent, received), forward, backward) = relay.await.unwrap();
        assert_eq!((sent, received), (len_ab as u64, len_ba as u64));
        assert_eq!((forward, backward), (sent, received));
    }

    #[tokio::test]
    async fn small_and_bulk_data_arrive_whole_both_ways_after_a_half_close() {
        for (ab, ba) in [
            (0, 0),
            (1, 0),
            (5, 3),
            (SMALL, SMALL),
            (SMALL + 1, 1),
            (3 * PIPE_CHUNK + 17, 2 * PIPE_CHUNK),
            (40 * 1024 * 1024, 7),
        ] {
            relay_through(ab, ba).await;
        }
    }

    #[tokio::test]
    async fn bulk_data_takes_a_pipe_and_a_small_message_then_idleness_gives_it_back() {
        let (mut client, mut near) = socket_pair().await;
        let (far, mut server) = socket_pair().await;
        let mut direction = Direction::default();
        // Loopback hands the bytes to the peer's socket within write_all: once the reactor has seen them
        // arrive, one poll moves all of them.
        let bulk = payload(SMALL * 4 + 10);
        client.write_all(&bulk).await.unwrap();
        near.readable().await.unwrap();
        assert!(poll_now(&mut direction, &mut near, &far).is_pending());
        assert!(
            direction.pipe.is_some(),
            "a read that filled the small buffer brings a pipe, kept while bulk data flows"
        );
        let mut got = vec![0; bulk.len()];
        server.read_exact(&mut got).await.unwrap();
        assert!(got == bulk);
        client.write_all(b"ping").await.unwrap();
        near.readable().await.unwrap();
        assert!(poll_now(&mut direction, &mut near, &far).is_pending());
        assert!(
            direction.pipe.is_none(),
            "an idle direction after a small message holds no pipe"
        );
        let mut ping = [0; 4];
        server.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
    }

    #[tokio::test]
    async fn a_small_message_the_writer_cannot_take_whole_waits_in_a_copy_and_arrives_in_order() {
        let (mut client, mut near) = socket_pair().await;
        let (far, mut server) = socket_pair().await;
        // Small kernel buffers on the far side, which nobody reads yet: they fill after a few messages.
        socket2::SockRef::from(&far)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&server)
            .set_recv_buffer_size(2048)
            .unwrap();
        let mut direction = Direction::default();
        let mut sent = Vec::new();
        for i in 0..10_000 {
            let message = format!("message {i:05}, one of many small ones on a slow connection\n");
            client.write_all(message.as_bytes()).await.unwrap();
            sent.extend_from_slice(message.as_bytes());
            near.readable().await.unwrap();
            assert!(poll_now(&mut direction, &mut near, &far).is_pending());
            if !direction.leftover.is_empty() {
                break;
            }
        }
        assert!(
            !direction.leftover.is_empty(),
            "the far side's buffers never filled"
        );
        assert!(direction.pipe.is_none(), "small messages never take a pipe");
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        let (mut reader, _) = near.split();
        let (relayed, read) = tokio::join!(
            poll_fn(|cx| direction.poll(cx, &mut reader, &far, &mut |_| {})),
            server.read_to_end(&mut got)
        );
        assert_eq!(relayed.unwrap(), sent.len() as u64);
        read.unwrap();
        assert!(got == sent, "every message arrived whole and in order");
        assert_eq!(direction.leftover.capacity(), 0);
    }

    /// An idle spliced connection holds no read buffer: its task is only the two directions' bookkeeping
    /// (it held 4 KiB of buffers when each direction had its own small buffer).
    #[test]
    fn the_splice_state_of_a_connection_holds_no_read_buffer() {
        fn future_size<'a, F: std::future::Future>(
            _: fn(&'a mut TcpStream, &'a mut TcpStream, &'a mut Counted) -> F,
        ) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(splice_bidirectional);
        assert!(size < SMALL / 4, "the splice's state is {size} bytes");
    }

    /// Polls a direction until it has nothing more to do for now (its reader is still open: pending).
    fn poll_now(
        direction: &mut Direction,
        near: &mut TcpStream,
        far: &TcpStream,
    ) -> Poll<io::Result<u64>> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (mut reader, _) = near.split();
        direction.poll(&mut cx, &mut reader, far, &mut |_| {})
    }
}
