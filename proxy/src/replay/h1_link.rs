//! An HTTP/1.1 connection owned by one replay worker and driven inside that worker's task.
//!
//! hyper's client splits a connection into a `SendRequest` handle and a connection future that is
//! usually spawned as a task of its own. Then every exchange crosses between two tasks three times
//! (the request into the connection task, the response head and the body back), each a wake-up and a
//! trip through the scheduler. `replay --rate max` was profiled paying for exactly that hand-off, so here
//! the connection future is polled by the worker itself, next to the exchange it is waiting for: the
//! channels between the two halves stay, but a wake-up is always the worker's own.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::answer::{read_answer, Answer};

/// hyper's connection future: it reads and writes the socket, and ends when the connection does.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

pub struct H1Link {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection ended (the peer closed it, or it broke).
    driver: Option<Driver>,
}

impl H1Link {
    /// Speaks HTTP/1.1 on `stream`; the connection is driven by [`H1Link::exchange`] only.
    pub async fn handshake<S>(stream: S) -> Result<H1Link, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot speak HTTP/1.1 to the target: {e}"))?;
        Ok(H1Link {
            sender,
            driver: Some(Box::pin(connection)),
        })
    }

    /// Drives the connection until it takes the next request (`true`) or has ended (`false`: the target
    /// closed it, after a `connection: close` answer for one). Nothing has been sent when it is `false`,
    /// so the request can go on a new connection.
    pub async fn ready(&mut self) -> bool {
        let sender = &mut self.sender;
        let driver = &mut self.driver;
        poll_fn(|cx| {
            if let Poll::Ready(ready) = sender.poll_ready(cx) {
                return Poll::Ready(ready.is_ok());
            }
            let Some(connection) = driver.as_mut() else {
                return Poll::Ready(false);
            };
            if connection.as_mut().poll(cx).is_ready() {
                *driver = None;
                return Poll::Ready(false);
            }
            sender.poll_ready(cx).map(|ready| ready.is_ok())
        })
        .await
    }

    /// Sends `request` (origin-form) on a connection that is [`H1Link::ready`], and reads the whole
    /// answer, driving the connection meanwhile.
    pub async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, String> {
        let sender = &mut self.sender;
        let driver = &mut self.driver;
        let mut exchange = pin!(async move {
            let started = Instant::now();
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("the target did not answer: {e}"))?;
            read_answer(response, started).await
        });
        poll_fn(|cx| {
            if let Poll::Ready(answer) = exchange.as_mut().poll(cx) {
                return Poll::Ready(answer);
            }
            if let Some(connection) = driver.as_mut() {
                if connection.as_mut().poll(cx).is_ready() {
                    // What the connection delivered before it ended is in the exchange's channels; what
                    // it did not is an error there.
                    *driver = None;
                }
            }
            exchange.as_mut().poll(cx)
        })
        .await
    }
}
