//! An HTTP client connection's socket as hyper sees it, keeping the connection's account in the memory
//! budget ([`ConnectionBudget`]): reads while a request head is awaited count as head bytes, and pause
//! while the head is past its free share and the budget has no room; writes take response bytes off what
//! waits for the client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::budget::{ConnectionBudget, Purpose, RoomWait};

pub struct BudgetedIo<S> {
    inner: S,
    account: Arc<ConnectionBudget>,
    wait: RoomWait,
}

impl<S> BudgetedIo<S> {
    pub fn new(inner: S, account: Arc<ConnectionBudget>) -> Self {
        BudgetedIo {
            inner,
            account,
            wait: RoomWait::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BudgetedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let account = &this.account;
        let mut allowance = account.read_allowance();
        if allowance == Some(0) {
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
        let written = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.account.written(written);
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.account.written(written);
        Poll::Ready(Ok(written))
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
    use crate::budget::{MemoryBudget, FREE_HEAD, HEAD_READ};
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
