//! Delivering one request upstream and waiting for the answer's head, with the upstream timeout.
//!
//! The timeout starts once the whole request has been handed to the upstream connection, as Envoy's route
//! timeout does: an upload that takes minutes is not an upstream that fails to answer. It ends with the
//! response head, so a long streamed response body is never cut (a peer that vanishes mid-body is found by
//! TCP keepalive). The request body is watched on its way, which also tells a request body the client broke
//! (bad chunked framing, a reset mid-upload: the client's fault, a 400) from an upstream that failed (502).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;

/// Where the request body is on its way upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    Sending,
    /// Every byte handed to the upstream connection, or the body abandoned by the client connection
    /// pool (which only happens once it has nothing more to send).
    Sent,
    /// Reading the body from the client failed; the reason, as one line.
    Broken(String),
}

/// A request body that reports its progress to the [`Delivery`] it was made with.
pub struct WatchedBody<B> {
    inner: B,
    progress: watch::Sender<Progress>,
}

/// Why no response head came back.
#[derive(Debug)]
pub enum Failure<E> {
    /// The upstream did not begin its response within the timeout after the whole request reached it.
    TimedOut(Duration),
    /// The client's request body could not be read (the client's fault): answered 400.
    BrokenRequestBody(String),
    /// The upstream exchange failed (connect, protocol, reset).
    Upstream(E),
}

/// One request on its way: the watched body goes into the request, then [`Delivery::response`] waits.
pub struct Delivery {
    progress: watch::Receiver<Progress>,
    timeout: Duration,
}

impl Delivery {
    /// Wraps `body` for the trip upstream; the upstream gets `timeout` to answer once it is sent.
    pub fn new<B>(body: B, timeout: Duration) -> (WatchedBody<B>, Delivery) {
        let (progress, watching) = watch::channel(Progress::Sending);
        (
            WatchedBody {
                inner: body,
                progress,
            },
            Delivery {
                progress: watching,
                timeout,
            },
        )
    }

    /// Drives `sending` (the client's request future) to the response head, within the timeout once the
    /// body is sent.
    pub async fn response<T, E>(
        mut self,
        sending: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, Failure<E>> {
        tokio::pin!(sending);
        let sent = async {
            // An error means the body was dropped: the pool is done with it, so the request is out.
            let _ = self
                .progress
                .wait_for(|progress| *progress != Progress::Sending)
                .await;
        };
        let outcome = tokio::select! {
            outcome = &mut sending => Some(outcome),
            _ = sent => None,
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => match tokio::time::timeout(self.timeout, &mut sending).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(Failure::TimedOut(self.timeout)),
            },
        };
        outcome.map_err(|e| match &*self.progress.borrow() {
            Progress::Broken(reason) => Failure::BrokenRequestBody(reason.clone()),
            _ => Failure::Upstream(e),
        })
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let progress = match &polled {
            Poll::Ready(None) => Progress::Sent,
            Poll::Ready(Some(Err(e))) => Progress::Broken(e.to_string()),
            _ => return polled,
        };
        self.progress.send_replace(progress);
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            // hyper does not poll a body that says it has ended (an empty GET body, or the last chunk of
            // a sized one), so this is where such a request is known to be sent.
            self.progress.send_if_modified(|progress| {
                let first = *progress == Progress::Sending;
                if first {
                    *progress = Progress::Sent;
                }
                first
            });
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
