//! A response body paced by its client: its next chunk is taken from the upstream only while the bytes
//! waiting for the client fit the connection's free share or the memory budget has room
//! ([`ConnectionBudget`]). A client that does not read thus stops the sidecar reading from the upstream
//! (whose writes block in turn), instead of having its response gathered in the sidecar's memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};

use crate::budget::{ConnectionBudget, Purpose, RoomWait};

pub struct PacedBody<B> {
    inner: B,
    account: Arc<ConnectionBudget>,
    wait: RoomWait,
}

impl<B> PacedBody<B> {
    pub fn new(inner: B, account: Arc<ConnectionBudget>) -> Self {
        PacedBody {
            inner,
            account,
            wait: RoomWait::default(),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for PacedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let account = &this.account;
        ready!(this
            .wait
            .poll_until(cx, account.budget(), Purpose::QueuedForPeer, || {
                account.may_queue()
            }));
        let polled = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = polled
            .as_ref()
            .and_then(|frame| frame.as_ref().ok())
            .and_then(Frame::data_ref)
        {
            account.queued(data.remaining());
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for PacedBody<B> {
    fn drop(&mut self) {
        // hyper drops a response body once it is sent (or abandoned): on HTTP/1, what the connection reads
        // next is the next request's head.
        self.account.expect_head();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{MemoryBudget, FREE_QUEUE, QUEUE_CHUNK};
    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_body_waiting_for_its_client_takes_no_chunk_while_the_budget_has_no_room() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(QUEUE_CHUNK);
        let account = Arc::new(ConnectionBudget::on(budget, false));
        let chunks = (0..4).map(|_| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![0u8; FREE_QUEUE])))
        });
        let mut body = PacedBody::new(StreamBody::new(stream::iter(chunks)), account.clone());
        for _ in 0..2 {
            body.frame().await.unwrap().unwrap();
        }
        assert_eq!(
            budget.used(),
            FREE_QUEUE,
            "the second chunk is past the free share"
        );
        let paused =
            tokio::time::timeout(std::time::Duration::from_millis(200), body.frame()).await;
        assert!(
            paused.is_err(),
            "no room for another chunk: the upstream is not read"
        );
        account.written(2 * FREE_QUEUE);
        assert!(
            body.frame().await.is_some(),
            "the client read: the body goes on"
        );
    }
}
