//! An HTTP client connection's socket as hyper sees it, keeping the connection's account in the memory
//! budget ([`ConnectionBudget`]): reads while a request head is awaited count as head bytes, and pause
//! while the head is past its free share and the budget has no room; writes take response bytes off what
//! waits for the client. Either side is shed when it waits on the spent budget for
//! [`SHED_AFTER`]: a paused head (answered 503 when it can be), or a client that took none of the
//! response bytes it holds in the budget (closed).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::time::Sleep;
use tracing::debug;

use crate::budget::{ConnectionBudget, Purpose, RoomWait, Shed, SHED_AFTER};

pub struct BudgetedIo<S> {
    inner: S,
    account: Arc<ConnectionBudget>,
    wait: RoomWait,
    /// Armed while a write waits on a client that holds budget while the budget is spent: when it fires
    /// and the client has still taken nothing, the connection is shed.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<S> BudgetedIo<S> {
    pub fn new(inner: S, account: Arc<ConnectionBudget>) -> Self {
        BudgetedIo {
            inner,
            account,
            wait: RoomWait::default(),
            stall: None,
        }
    }

    /// The socket, once hyper has handed the connection over (a CONNECT tunnel, relayed with its own
    /// share of the budget).
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// After a write that could not go on: pending, unless the client is to be shed.
    fn write_blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            match self.account.reader_stalled() {
                Ok(()) => {
                    self.stall = None;
                    self.account.budget().count_shed(Purpose::QueuedForPeer);
                    debug!("{}", Shed::Reader);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        Shed::Reader,
                    )));
                }
                Err(None) => {
                    self.stall = None;
                    return Poll::Pending;
                }
                Err(Some(deadline)) => {
                    let stall = self
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                    stall.as_mut().reset(deadline.into());
                    ready!(stall.as_mut().poll(cx));
                }
            }
        }
    }

    fn wrote<T>(&mut self, written: usize, result: T) -> Poll<T> {
        self.stall = None;
        self.account.written(written);
        Poll::Ready(result)
    }
}

/// The answer to a head shed while no response was begun on its connection.
const SHED_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 89\r\nconnection: close\r\nretry-after: 1\r\n\r\nsidecar: the request head waited too long: the memory budget is spent; try again shortly\n";

impl<S: AsyncWrite + Unpin> BudgetedIo<S> {
    /// Gives up a head that waited on the spent budget too long: a 503 when the connection has no
    /// response begun (one write, as far as the socket takes it: it has taken nothing else yet), and an
    /// error that makes hyper close the connection.
    fn shed_head(&mut self, cx: &mut Context<'_>) -> io::Error {
        self.account.budget().count_shed(Purpose::RequestHead);
        if self.account.may_answer() {
            let _ = Pin::new(&mut self.inner).poll_write(cx, SHED_ANSWER);
        }
        debug!("{}", Shed::Head);
        io::Error::new(io::ErrorKind::ConnectionAborted, Shed::Head)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for BudgetedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let account = &this.account;
        let mut allowance = account.read_allowance();
        if allowance == Some(0) && this.wait.paused_for() >= Some(SHED_AFTER) {
            return Poll::Ready(Err(this.shed_head(cx)));
        }
        if allowance == Some(0) {
            // A paused reader still hears of its connection being shed to make room for new ones
            // (crate::budget::admission): an empty read asks the socket's observer, taking no byte.
            if let Poll::Ready(Err(e)) =
                Pin::new(&mut this.inner).poll_read(cx, &mut ReadBuf::new(&mut []))
            {
                return Poll::Ready(Err(e));
            }
            ready!(this
                .wait
                .poll_until(cx, account.budget(), Purpose::RequestHead, || {
                    allowance = account.read_allowance();
                    allowance != Some(0)
                }));
        }
        let read = match allowance {
            Some(limit) if limit < buf.remaining() => {
                // At most `limit` bytes: a head takes no more than its share or the room it was let in for.
                let room = buf.initialize_unfilled_to(limit);
                let mut limited = ReadBuf::new(room);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
                let n = limited.filled().len();
                buf.advance(n);
                n
            }
            _ => {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                buf.filled().len() - before
            }
        };
        account.read(read);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BudgetedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => self.wrote(written, Ok(written)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.write_blocked(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(written)) => self.wrote(written, Ok(written)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.write_blocked(cx),
        }
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
    use crate::budget::{MemoryBudget, FREE_HEAD, FREE_QUEUE, HEAD_READ, QUEUE_CHUNK};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_head_past_its_share_is_read_while_the_budget_has_room_and_waits_when_it_has_none() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(2 * HEAD_READ);
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let account = Arc::new(ConnectionBudget::on(budget, true));
        let mut io = BudgetedIo::new(server, account.clone());
        client
            .write_all(&vec![b'h'; FREE_HEAD + 4 * HEAD_READ])
            .await
            .unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0;
        while read < FREE_HEAD + 2 * HEAD_READ {
            let n = io.read(&mut buf).await.unwrap();
            assert!(n <= FREE_HEAD.max(HEAD_READ), "one read takes {n}");
            read += n;
        }
        assert_eq!(budget.used(), 2 * HEAD_READ);
        let paused =
            tokio::time::timeout(std::time::Duration::from_millis(200), io.read(&mut buf)).await;
        assert!(paused.is_err(), "no room: the read waits");
        assert!(budget.denied(Purpose::RequestHead) >= 1);
        account.head_complete();
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0, "the head was taken: reading goes on");
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_head_paused_past_the_shedding_time_is_answered_503_and_closed() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(HEAD_READ);
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let account = Arc::new(ConnectionBudget::on(budget, true));
        let mut io = BudgetedIo::new(server, account);
        client
            .write_all(&vec![b'h'; FREE_HEAD + 3 * HEAD_READ])
            .await
            .unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let shed = loop {
            match io.read(&mut buf).await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(shed.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(budget.shed(Purpose::RequestHead), 1);
        let mut answer = vec![0u8; SHED_ANSWER.len()];
        client.read_exact(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        assert!(answer.contains(&format!("content-length: {}\r\n", body.len())));
    }

    #[tokio::test]
    async fn a_client_that_takes_none_of_its_budgeted_response_while_the_budget_is_spent_is_shed() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(QUEUE_CHUNK);
        let (_client, server) = tokio::io::duplex(1024);
        let account = Arc::new(ConnectionBudget::on(budget, false));
        let mut io = BudgetedIo::new(server, account.clone());
        account.queued(FREE_QUEUE + QUEUE_CHUNK);
        let response = vec![b'r'; FREE_QUEUE + QUEUE_CHUNK];
        let started = std::time::Instant::now();
        let shed = tokio::time::timeout(SHED_AFTER * 3, io.write_all(&response))
            .await
            .expect("shed within the shedding time")
            .unwrap_err();
        assert_eq!(shed.kind(), io::ErrorKind::ConnectionAborted);
        assert!(started.elapsed() >= SHED_AFTER);
        assert_eq!(budget.shed(Purpose::QueuedForPeer), 1);
    }

    #[tokio::test]
    async fn writes_take_response_bytes_off_what_waits_for_the_client() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let account = Arc::new(ConnectionBudget::on(budget, false));
        let mut io = BudgetedIo::new(server, account.clone());
        account.queued(100 * 1024);
        assert!(budget.used() > 0);
        io.write_all(&vec![b'r'; 100 * 1024]).await.unwrap();
        assert_eq!(budget.used(), 0);
        let mut got = vec![0u8; 100 * 1024];
        client.read_exact(&mut got).await.unwrap();
    }
}
