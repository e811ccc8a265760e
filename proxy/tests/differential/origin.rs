//! The origins of the differential test, on 127.0.0.1 with OS-chosen ports.
//!
//! The HTTP/1 origin writes exact bytes (so 1xx, pipelined answers, chunked trailers, a body cut off and a
//! response without length are what the test says, not what a library chooses) and keeps every request
//! it received. The HTTP/2 origin is hyper's server without its `date` header, so every field it sends is
//! one the test set.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::wire::{request_framing, Message, Wire};

/// What the HTTP/1 origin does with one request.
pub struct Reply {
    /// Written as soon as the request head is in, before its body is read (`100 Continue`).
    pub early: Vec<u8>,
    pub then: Then,
}

pub enum Then {
    /// Write these bytes and read the next request.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection.
    SendAndClose(Vec<u8>),
    /// Write these bytes, then echo every byte until the client's end (an upgrade, a tunnel).
    SendThenEcho(Vec<u8>),
    /// Never answer: read until the client's end, then close.
    Silent,
}

impl Reply {
    pub fn send(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            early: Vec::new(),
            then: Then::Send(bytes.into()),
        }
    }

    pub fn then(then: Then) -> Reply {
        Reply {
            early: Vec::new(),
            then,
        }
    }
}

/// The HTTP/1 origin: every connection served by `reply` request after request.
pub struct Http1Origin {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Message>>>,
}

impl Http1Origin {
    pub async fn start(reply: fn(&Message) -> Reply) -> Http1Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, reply, log.clone()));
            }
        });
        Http1Origin { addr, received }
    }

    /// The requests received so far, bodies de-chunked (a body cut off by the client: `complete` false).
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve(stream: TcpStream, reply: fn(&Message) -> Reply, log: Arc<Mutex<Vec<Message>>>) {
    let mut wire = Wire::new(stream);
    loop {
        let Ok(Some((start, headers))) = wire.head().await else {
            wire.shutdown().await;
            return;
        };
        let mut request = Message {
            start,
            headers,
            ..Message::default()
        };
        let Reply { early, then } = reply(&request);
        if !early.is_empty() {
            wire.send(&early).await;
        }
        let framing = if request.method() == "CONNECT" {
            super::wire::Framing::Empty
        } else {
            request_framing(&request.headers)
        };
        (request.body, request.trailers, request.complete) = wire.body(framing).await;
        let complete = request.complete;
        log.lock().unwrap().push(request);
        if !complete {
            wire.shutdown().await;
            return;
        }
        match then {
            Then::Send(bytes) => wire.send(&bytes).await,
            Then::SendAndClose(bytes) => {
                wire.send(&bytes).await;
                wire.shutdown().await;
                return;
            }
            Then::SendThenEcho(bytes) => {
                wire.send(&bytes).await;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match wire.reader_mut().read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if wire
                                .reader_mut()
                                .get_mut()
                                .write_all(&buf[..n])
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                wire.shutdown().await;
                return;
            }
            Then::Silent => {
                wire.rest().await;
                wire.shutdown().await;
                return;
            }
        }
    }
}

pub type H2Body = UnsyncBoxBody<Bytes, Infallible>;

/// The HTTP/2 (prior knowledge) origin, answering with `answer`.
pub async fn start_h2_origin(
    answer: fn(Request<Incoming>) -> futures_util::future::BoxFuture<'static, Response<H2Body>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder.auto_date_header(false);
                let service = hyper::service::service_fn(move |request| async move {
                    Ok::<_, Infallible>(answer(request).await)
                });
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A body of the given frames, sent as they are (no length known in advance, so no `content-length` is
/// added by hyper).
pub fn frames(frames: Vec<Frame<Bytes>>) -> H2Body {
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    StreamBody::new(stream).boxed_unsync()
}

/// A body whose first frame is `first` and which never ends (until the stream is reset).
pub fn never_ending(first: &'static [u8]) -> H2Body {
    let stream = futures_util::stream::once(async move {
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(first)))
    })
    .chain(futures_util::stream::pending());
    StreamBody::new(stream).boxed_unsync()
}

/// The frames of an incoming body as they arrive, each data frame handed to `map`, and `trailers` at the
/// end: a streaming answer, frame for frame.
pub fn streamed_echo(body: Incoming, trailers: http::HeaderMap) -> H2Body {
    let stream = futures_util::stream::unfold(Some((body, trailers)), |state| async move {
        let (mut body, trailers) = state?;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => return Some((Ok(Frame::data(data)), Some((body, trailers)))),
                    Err(_) => continue,
                },
                _ => return Some((Ok(Frame::trailers(trailers)), None)),
            }
        }
    });
    StreamBody::new(stream).boxed_unsync()
}
