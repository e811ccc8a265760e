//! The `http` listeners' HTTP/1 engine: each caller connection is served on one connection upstream at a
//! time, request after request, without re-serving the exchange through an HTTP library.
//!
//! Upstream is the [`Destination`]: the reverse listener's app, every request on one connection to it
//! (taken from the listener's pool of idle app connections, [`AppPool`], and left there when the caller's
//! connection ends, if it is between exchanges); or, on the forward listener, the origin each
//! absolute-form request names ([`forward`]), its connection kept while the next request names the same
//! one. A CONNECT on the forward listener is dialled by the engine,
//! granted, and the caller's connection handed back as a [`Tunnel`] for the stream relay.
//!
//! For each request the engine reads the head from the caller (parsed with httparse where it lies,
//! bounded by `--max-request-head`), checks it as the listener always has, writes the rewritten head to
//! the app, and relays the body by its framing as it comes (followed, not decoded: Content-Length bytes
//! counted, chunk sizes read as they pass, announced trailers passed on). It then reads the app's response
//! head, rewrites it (hop-by-hop fields) and relays its body the same way, and goes on with the next
//! request (pipelined bytes wait in the buffer). A `101` (or a `2xx` to CONNECT) turns the connection into
//! a byte relay both ways.
//!
//! The record is the tap's ([`crate::tap::HttpTap`]), as on every relayed stream: it is shown the caller's
//! bytes as they came and the app's as they came, so the reverse `http` listener records exactly what a
//! reverse `tcp` relay records of the same traffic. The sidecar's own answers (refusals, 502, 504) are
//! handed to it as such. With capture off there is no tap, and the engine times each exchange for
//! `sidecar_http_request_duration_seconds` itself.
//!
//! Buffers live only while a request is in flight: an idle keep-alive connection holds none besides a
//! small read area in its task, and reads grow to 64 KiB only while a read fills what it was given.

mod answers;
mod app_pool;
mod body;
mod buffer;
mod failures;
mod fields;
mod forward;
mod relay;
mod request;
mod response;
mod tunnel;

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::budget::ConnectionBudget;
use crate::capture::{Route, StreamCapture};
use crate::connection::Connection;
use crate::http::connection::{Opened, ServeOptions};
use crate::io::{BudgetedIo, Observer, PrefixedIo};
use crate::log_escape::Escaped;
use crate::metrics::DirectionLabels;
use crate::net::{dial, DialError, Target};
use crate::peer_warnings::{HANDSHAKE_TIMEOUT, HEAD_TOO_LARGE, MALFORMED_REQUEST};
use crate::tap::{HttpTap, Protocol};
use body::{filtered_trailers, BodyFollower, Framing};
use buffer::{read_idle, Buffer, SMALL};
use forward::Addressed;
use request::{HeadError, Mode, Request};
use response::Response;

pub use app_pool::AppPool;

/// Where the engine delivers.
#[derive(Clone, Copy)]
pub enum Destination<'a> {
    /// The reverse listener's app: every request goes to it.
    App(&'a App),
    /// The forward listener: each request goes where its absolute-form URL says; CONNECT opens a tunnel.
    Forward(&'a Forward),
}

impl Destination<'_> {
    fn upstream_timeout(&self) -> Duration {
        match self {
            Destination::App(app) => app.upstream_timeout,
            Destination::Forward(forward) => forward.upstream_timeout,
        }
    }

    fn connect_timeout(&self) -> Duration {
        match self {
            Destination::App(app) => app.connect_timeout,
            Destination::Forward(forward) => forward.connect_timeout,
        }
    }
}

/// The forward listener's waits: connecting to an origin (or a tunnel's target), and an origin beginning
/// its response.
pub struct Forward {
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
}

/// A CONNECT tunnel the forward listener granted: the caller's connection handed back with the bytes it
/// sent after the CONNECT head (`early`, to be replayed first), and the target's, for the stream relay.
pub struct Tunnel<C> {
    pub caller: C,
    pub early: Vec<u8>,
    pub upstream: TcpStream,
    pub route: Arc<Route>,
    pub record: Option<StreamCapture>,
}

/// The reverse listener's app, how long the engine waits for it, and its idle connections.
pub struct App {
    pub target: Target,
    /// The app as logs and answers name it (`127.0.0.1:8080`).
    pub name: String,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Connections to the app that earlier caller connections left, for the next ones.
    pub pool: Arc<AppPool>,
}

/// What the listener allows a caller.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// How long a caller may take to send a request head (the first, and each one after an answer).
    pub handshake_timeout: Duration,
    pub max_request_head: usize,
}

/// The longest request body the sidecar reads past, unforwarded, to keep a connection it answered itself
/// (as hyper did); a longer one, or a chunked one, closes the connection instead.
const MAX_SKIPPED_BODY: u64 = 64 * 1024;

/// Serves an HTTP/1 connection whose first bytes [`crate::http::connection::open`] read, as both HTTP
/// listeners do: what the connection holds for its caller (the head being read) is counted in the memory
/// budget, and reading pauses while the budget is spent. See [`serve`] for what it returns.
pub async fn serve_opened<S>(
    opened: Opened<S>,
    options: ServeOptions,
    destination: Destination<'_>,
    client: IpAddr,
    context: &Connection,
    shutdown: &CancellationToken,
) -> Option<Tunnel<BudgetedIo<PrefixedIo<S>>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let account = Arc::new(ConnectionBudget::new(true));
    let caller = BudgetedIo::new(
        PrefixedIo::new(opened.prefix, opened.stream),
        account.clone(),
    );
    let limits = Limits {
        handshake_timeout: options.handshake_timeout,
        max_request_head: options.max_request_head,
    };
    serve(
        caller,
        account,
        destination,
        limits,
        client,
        context,
        shutdown,
    )
    .await
}

/// Serves HTTP/1 requests from `caller` (the listener's socket, counted in `account`) until the caller is
/// done, the connection fails, or shutdown ends it between requests; or, on the forward listener, until a
/// CONNECT is granted: then the caller's connection is handed back with the tunnel's other end.
#[allow(clippy::too_many_arguments)]
async fn serve<C>(
    caller: C,
    account: Arc<ConnectionBudget>,
    destination: Destination<'_>,
    limits: Limits,
    client: IpAddr,
    context: &Connection,
    shutdown: &CancellationToken,
) -> Option<Tunnel<C>>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let timer = context.capture.is_none().then(|| {
        context
            .metrics
            .request_duration
            .get_or_create(&DirectionLabels {
                direction: context.direction,
            })
            .clone()
    });
    let mut engine = Engine {
        caller,
        account,
        destination,
        limits,
        client,
        context,
        shutdown,
        input: Buffer::default(),
        from_app: Buffer::default(),
        upstream: None,
        upstream_idle_since: None,
        upstream_origin: None,
        tunnel: None,
        tap: None,
        target: None,
        timer,
        served: false,
    };
    let failure = engine.run().await;
    if let Some(tap) = engine.tap.take() {
        tap.finish(failure.as_deref());
    }
    engine.give_back_upstream();
    if let Some(granted) = engine.tunnel.take() {
        return Some(Tunnel {
            caller: engine.caller,
            early: engine.input.bytes().to_vec(),
            upstream: granted.upstream,
            route: granted.route,
            record: granted.record,
        });
    }
    let _ = engine.caller.shutdown().await;
    None
}

struct Engine<'a, C> {
    caller: C,
    account: Arc<ConnectionBudget>,
    destination: Destination<'a>,
    limits: Limits,
    client: IpAddr,
    context: &'a Connection,
    shutdown: &'a CancellationToken,
    /// What the caller sent that is not handled yet: the head being read, body bytes, pipelined requests.
    input: Buffer,
    /// What the app sent that is not relayed yet.
    from_app: Buffer,
    upstream: Option<TcpStream>,
    /// Set while `upstream` is between exchanges, its last response read to its framed end: when that
    /// ended. Only such a connection may serve another caller ([`AppPool`]).
    upstream_idle_since: Option<Instant>,
    /// The origin `upstream` is connected to (the forward listener only).
    upstream_origin: Option<crate::net::Target>,
    /// The tunnel a CONNECT opened (the forward listener only), handed back when the engine stops.
    tunnel: Option<tunnel::Granted>,
    /// The record's tap, from the first request on (capture on only).
    tap: Option<HttpTap>,
    /// The target the tap records under (the last request's `Host`).
    target: Option<String>,
    /// The request-duration histogram, with capture off (with capture on the tap observes it).
    timer: Option<Histogram>,
    served: bool,
}

/// What happens after an exchange.
enum Flow {
    Next,
    /// The caller's connection ends; with why, when it did not end cleanly.
    Close(Option<String>),
    /// A CONNECT was granted: the caller's connection is the tunnel's now.
    Tunnel,
}

/// How delivering a request to the app went.
enum Delivered {
    Response(Response),
    /// The app closed a reused connection before it read the request: once more on a new one.
    Retry,
    Done(Flow),
}

enum Event {
    Caller(io::Result<usize>),
    App(io::Result<usize>),
    TimedOut,
}

impl<C: AsyncRead + AsyncWrite + Unpin> Engine<'_, C> {
    async fn run(&mut self) -> Option<String> {
        loop {
            let request = self.next_request().await?;
            self.served = true;
            match self.exchange(request).await {
                Flow::Next => {
                    self.account.expect_head();
                    self.input.release();
                    self.from_app.release();
                }
                Flow::Close(failure) => return failure,
                Flow::Tunnel => return None,
            }
        }
    }

    /// Reads the next request head; `None` when the connection is done (closed, timed out, refused).
    async fn next_request(&mut self) -> Option<Request> {
        let deadline = Instant::now() + self.limits.handshake_timeout;
        let mode = match self.destination {
            Destination::App(_) => Mode::Reverse {
                client: self.client,
                want_host: self.context.capture.is_some(),
            },
            Destination::Forward(_) => Mode::Forward,
        };
        loop {
            if !self.input.is_empty() {
                let parsed = request::parse(self.input.bytes(), self.limits.max_request_head, mode);
                match parsed {
                    Ok(Some(request)) => {
                        self.account.head_complete();
                        return Some(request);
                    }
                    Ok(None) => {}
                    Err(HeadError::TooLarge(why)) => {
                        self.context.count_handshake_error("too_large");
                        HEAD_TOO_LARGE.occurred_because(&why);
                        let answer = answers::unreadable_head(
                            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            &why,
                        );
                        let _ = self.caller.write_all(&answer).await;
                        return None;
                    }
                    Err(HeadError::Malformed(why)) => {
                        self.context.count_handshake_error("malformed");
                        MALFORMED_REQUEST.occurred_because(&why);
                        let answer = answers::unreadable_head(StatusCode::BAD_REQUEST, &why);
                        let _ = self.caller.write_all(&answer).await;
                        return None;
                    }
                }
            }
            let read = if self.input.is_empty() {
                tokio::select! {
                    read = tokio::time::timeout_at(deadline, read_idle(&mut self.caller, &mut self.input)) => read,
                    _ = self.shutdown.cancelled() => return None,
                }
            } else {
                tokio::time::timeout_at(deadline, self.input.read_from(&mut self.caller)).await
            };
            match read {
                Err(_) if self.served => {
                    debug!("idle keep-alive connection closed");
                    return None;
                }
                Err(_) => {
                    self.context.count_handshake_error("timeout");
                    HANDSHAKE_TIMEOUT.occurred();
                    return None;
                }
                Ok(Ok(0)) => {
                    if !self.input.is_empty() {
                        debug!("connection closed in the middle of a request head");
                    }
                    return None;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(error = %e, "HTTP connection ended with an error");
                    return None;
                }
            }
        }
    }

    async fn exchange(&mut self, mut request: Request) -> Flow {
        let started = std::time::Instant::now();
        if let Some(Addressed::Tunnel(_)) = request.addressed {
            return self.open_tunnel(request).await;
        }
        self.record_request_head(&request);
        self.input.consume(request.len);
        if let Some((refusal, closes)) = request.refusal.take() {
            warn!(reason = %Escaped(&refusal.reason), "refused request");
            let reason = refusal.reason.clone();
            return self
                .answer(
                    &request,
                    refusal.status,
                    &refusal.reason,
                    reason,
                    closes,
                    true,
                    started,
                )
                .await;
        }
        let mut body = BodyFollower::new(request.framing);
        let mut may_retry = true;
        let mut continued = false;
        let response = loop {
            match self
                .deliver(&request, &mut body, may_retry, &mut continued, started)
                .await
            {
                Delivered::Response(response) => break response,
                Delivered::Retry => may_retry = false,
                Delivered::Done(flow) => return flow,
            }
        };
        self.respond(response, &request, &mut body, started).await
    }

    /// Shows the tap the caller's request head as it came (starting the tap, or moving it to this
    /// request's target, as needed).
    fn record_request_head(&mut self, request: &Request) {
        let Some(capture) = self.context.capture.as_ref() else {
            return;
        };
        let (target, delivered_to) = match self.destination {
            Destination::App(app) => (
                request.host.clone().unwrap_or_else(|| app.name.clone()),
                Some(&app.name),
            ),
            Destination::Forward(_) => (request.record_target().to_owned(), None),
        };
        if self.target.as_deref() != Some(target.as_str()) {
            let route = Arc::new(Route::new("http", target.clone(), delivered_to.cloned()));
            match self.tap.as_mut() {
                Some(tap) => tap.set_route(self.context, capture, route),
                None => {
                    self.tap = Some(HttpTap::new(self.context, capture, route, Protocol::Http1))
                }
            }
            self.target = Some(target);
        }
        if let Some(tap) = self.tap.as_mut() {
            tap.read(&self.input.bytes()[..request.len]);
        }
    }

    /// Sends the request to the app and waits for the head of its final response, relaying the body
    /// meanwhile.
    async fn deliver(
        &mut self,
        request: &Request,
        body: &mut BodyFollower,
        may_retry: bool,
        continued: &mut bool,
        started: std::time::Instant,
    ) -> Delivered {
        // A request sent again goes on a new connection: the pool's others are often as old as the one
        // that failed, and the app may be closing them all.
        let reused = match self.connect(request, may_retry).await {
            Ok(reused) => reused,
            Err(e) => return Delivered::Done(self.dial_failed(request, e, started).await),
        };
        let upstream = self.upstream.as_mut().expect("connected above");
        if let Err(e) = upstream.write_all(&request.upstream_head).await {
            self.upstream = None;
            if reused && may_retry {
                return Delivered::Retry;
            }
            let flow = self
                .upstream_failed(request, e.to_string(), body.done(), started)
                .await;
            return Delivered::Done(flow);
        }
        if request.expects_continue && !*continued && !body.done() {
            *continued = true;
            if let Err(e) = self.caller.write_all(answers::CONTINUE).await {
                return Delivered::Done(Flow::Close(Some(e.to_string())));
            }
        }
        let mut sent_at = body.done().then(Instant::now);
        loop {
            // The caller's body bytes already read go on first.
            if !body.done() && !self.input.is_empty() {
                let step = match body.advance(self.input.bytes()) {
                    Ok(step) => step,
                    Err(why) => {
                        return Delivered::Done(self.broken_body(request, why, started).await)
                    }
                };
                let bytes = &self.input.bytes()[..step.consumed];
                if let Some(tap) = self.tap.as_mut() {
                    tap.read(bytes);
                }
                let upstream = self.upstream.as_mut().expect("connected above");
                let mut sent = upstream.write_all(&bytes[..step.forward]).await;
                if sent.is_ok() && body.done() && request.framing == Framing::Chunked {
                    let trailers =
                        filtered_trailers(&body.take_trailers(), &request.announced_trailers);
                    sent = upstream.write_all(&trailers).await;
                }
                self.input.consume(step.consumed);
                if let Err(e) = sent {
                    self.upstream = None;
                    let flow = self
                        .upstream_failed(request, e.to_string(), false, started)
                        .await;
                    return Delivered::Done(flow);
                }
                if body.done() {
                    sent_at = Some(Instant::now());
                }
                continue;
            }
            if !self.from_app.is_empty() {
                let keep_caller =
                    request.keep_alive && body.done() && !self.shutdown.is_cancelled();
                match response::parse(self.from_app.bytes(), request, keep_caller) {
                    Ok(Some(response)) if response.informational => {
                        // Not passed on (the caller got the sidecar's own 100), but recorded as seen.
                        if let Some(tap) = self.tap.as_mut() {
                            tap.written(&self.from_app.bytes()[..response.len]);
                        }
                        self.from_app.consume(response.len);
                        continue;
                    }
                    Ok(Some(response)) => return Delivered::Response(response),
                    Ok(None) => {}
                    Err(why) => {
                        self.upstream = None;
                        self.from_app = Buffer::default();
                        let flow = self
                            .upstream_failed(request, why, body.done(), started)
                            .await;
                        return Delivered::Done(flow);
                    }
                }
            }
            // Pipelined requests wait in the buffer, up to a head's worth.
            let read_caller =
                !body.done() || self.input.len() < self.limits.max_request_head.max(SMALL);
            let timeout = self.destination.upstream_timeout();
            let upstream = self.upstream.as_mut().expect("connected above");
            let event = tokio::select! {
                read = self.input.read_from(&mut self.caller), if read_caller => Event::Caller(read),
                read = self.from_app.read_from(upstream) => Event::App(read),
                _ = tokio::time::sleep_until(sent_at.unwrap_or_else(Instant::now) + timeout), if sent_at.is_some() => Event::TimedOut,
            };
            match event {
                Event::Caller(Ok(0)) if body.done() => {
                    // The caller left before the answer: the exchange is abandoned.
                    self.upstream = None;
                    return Delivered::Done(Flow::Close(None));
                }
                Event::Caller(Ok(0)) => {
                    let why = "the client closed the connection before the body ended";
                    return Delivered::Done(self.broken_body(request, why, started).await);
                }
                Event::Caller(Err(e)) if body.done() => {
                    self.upstream = None;
                    return Delivered::Done(Flow::Close(Some(e.to_string())));
                }
                Event::Caller(Err(e)) => {
                    let why = e.to_string();
                    return Delivered::Done(self.broken_body(request, &why, started).await);
                }
                Event::Caller(Ok(_)) | Event::App(Ok(1..)) => {}
                Event::App(ended) => {
                    let nothing_read = self.from_app.is_empty();
                    self.upstream = None;
                    self.from_app = Buffer::default();
                    // The app closed a reused connection without a byte of answer: most likely it was
                    // closing it as idle while the request was on its way (its keep-alive timeout), and
                    // never read it. It may have, though, so only a request that may be sent twice is
                    // sent again (hyper and nginx do the same); anything else is a 502.
                    if reused
                        && may_retry
                        && nothing_read
                        && request.framing == Framing::Empty
                        && request.idempotent
                    {
                        return Delivered::Retry;
                    }
                    let reason = match ended {
                        Err(e) => e.to_string(),
                        Ok(_) => "connection closed before message completed".to_owned(),
                    };
                    let flow = self
                        .upstream_failed(request, reason, body.done(), started)
                        .await;
                    return Delivered::Done(flow);
                }
                Event::TimedOut => {
                    self.upstream = None;
                    self.from_app = Buffer::default();
                    return Delivered::Done(self.timed_out(request, started).await);
                }
            }
        }
    }

    /// Relays the app's final response to the caller, head then body. When the app answered before the
    /// request body ended, the rest of that body goes on to it meanwhile ([`relay`]).
    async fn respond(
        &mut self,
        mut response: Response,
        request: &Request,
        request_body: &mut BodyFollower,
        started: std::time::Instant,
    ) -> Flow {
        if let Some(tap) = self.tap.as_mut() {
            tap.written(&self.from_app.bytes()[..response.len]);
        }
        self.from_app.consume(response.len);
        if response.switches {
            return self.switch(response, started).await;
        }
        let head = std::mem::take(&mut response.caller_head);
        let mut body = BodyFollower::new(response.framing);
        let tap = std::sync::Mutex::new(self.tap.take());
        let upstream = self.upstream.as_mut().expect("the response came from it");
        let relayed = if request_body.done() {
            relay::response_body(
                upstream,
                &mut self.caller,
                &mut self.from_app,
                head,
                &mut body,
                &response,
                &tap,
                &self.account,
            )
            .await
        } else {
            let (mut app_in, mut app_out) = upstream.split();
            let (mut caller_in, mut caller_out) = tokio::io::split(&mut self.caller);
            let to_app = relay::request_body(
                &mut caller_in,
                &mut app_out,
                &mut self.input,
                request_body,
                request,
                &tap,
            );
            let to_caller = relay::response_body(
                &mut app_in,
                &mut caller_out,
                &mut self.from_app,
                head,
                &mut body,
                &response,
                &tap,
                &self.account,
            );
            tokio::pin!(to_app, to_caller);
            let mut request_relayed = false;
            loop {
                tokio::select! {
                    sent = &mut to_app, if !request_relayed => match sent {
                        Ok(()) => request_relayed = true,
                        // The app's answer still goes on; the body's end is unknown, so the caller's
                        // connection closes after it (it was to close anyway: the answer began first).
                        Err(relay::BodyStopped::ByApp(why)) => {
                            debug!(reason = %Escaped(&why), "the app answered and stopped reading the request body");
                            request_relayed = true;
                        }
                        Err(relay::BodyStopped::ByCaller(why)) => break Err(relay::Cut(Some(format!("the request body could not be relayed: {why}")))),
                    },
                    relayed = &mut to_caller => break relayed,
                }
            }
        };
        self.tap = tap
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(relay::Cut(why)) = relayed {
            self.upstream = None;
            return Flow::Close(why);
        }
        // An HTTP/1.0 request goes to the app as HTTP/1.0 without `keep-alive` (a hop-by-hop field): the
        // app closes that connection after its answer, even when the answer does not say so.
        if !response.upstream_reusable
            || request.http10
            || !request_body.done()
            || !self.from_app.is_empty()
        {
            self.upstream = None;
            self.from_app = Buffer::default();
        } else {
            self.upstream_idle_since = Some(Instant::now());
        }
        self.timed(started);
        if response.closes_caller {
            Flow::Close(None)
        } else {
            Flow::Next
        }
    }

    /// After a `101` (or a tunnel granted): the caller and the app are joined by a byte relay.
    async fn switch(&mut self, response: Response, started: std::time::Instant) -> Flow {
        self.account.upgraded();
        self.timed(started);
        let Some(mut upstream) = self.upstream.take() else {
            return Flow::Close(None);
        };
        let mut head = response.caller_head;
        head.extend_from_slice(self.from_app.bytes());
        self.from_app = Buffer::default();
        if let Err(e) = self.caller.write_all(&head).await {
            return Flow::Close(Some(e.to_string()));
        }
        if !self.input.is_empty() {
            if let Err(e) = upstream.write_all(self.input.bytes()).await {
                return Flow::Close(Some(e.to_string()));
            }
        }
        self.input = Buffer::default();
        match crate::io::copy_bidirectional(&mut self.caller, &mut upstream).await {
            Ok((sent, received)) => debug!(sent, received, "upgraded connection closed"),
            Err(e) => debug!(error = %e, "upgraded connection ended with an error"),
        }
        Flow::Close(None)
    }

    /// The upstream connection for `request`: the open one when it leads where the request goes and
    /// the other end has not closed it meanwhile, or (`from_pool`) an idle one from the app pool (then
    /// `true`), else a new one.
    async fn connect(&mut self, request: &Request, from_pool: bool) -> Result<bool, DialError> {
        let target = match (self.destination, &request.addressed) {
            (Destination::App(app), _) => &app.target,
            (Destination::Forward(_), Some(Addressed::Origin(origin))) => &origin.target,
            (Destination::Forward(_), _) => {
                unreachable!("only absolute-form requests are delivered")
            }
        };
        // From here the connection carries this request: it is no longer between exchanges.
        let idle_since = self.upstream_idle_since.take();
        if let Some(upstream) = &self.upstream {
            let (same_origin, fresh) = match (self.destination, idle_since) {
                // The caller's own app connection is held to the pool's idle timeout too.
                (Destination::App(app), Some(since)) => (true, app.pool.may_reuse(since)),
                (Destination::App(_), None) => (true, true),
                (Destination::Forward(_), _) => {
                    (self.upstream_origin.as_ref() == Some(target), true)
                }
            };
            if same_origin && fresh && app_pool::still_open(upstream) {
                return Ok(true);
            }
            self.upstream = None;
            self.from_app = Buffer::default();
        }
        if let (Destination::App(app), true) = (self.destination, from_pool) {
            if let Some(pooled) = app.pool.take() {
                self.upstream = Some(pooled);
                return Ok(true);
            }
        }
        let upstream = dial(target, self.destination.connect_timeout()).await?;
        self.upstream = Some(upstream);
        if let Destination::Forward(_) = self.destination {
            self.upstream_origin = Some(target.clone());
        }
        Ok(false)
    }

    /// When the caller's connection ends: the app connection it held goes to the pool for other callers,
    /// if it is between exchanges (its last response read to its framed end, nothing after it, neither
    /// side having said `close`, no upgrade, no failure; see `respond`). Anything else is closed.
    fn give_back_upstream(&mut self) {
        let (Destination::App(app), Some(upstream), Some(since)) = (
            self.destination,
            self.upstream.take(),
            self.upstream_idle_since.take(),
        ) else {
            return;
        };
        if self.from_app.is_empty() {
            app.pool.give_back(upstream, since);
        }
    }

    /// Counts an exchange's duration, with capture off (with capture on the tap's recorder does).
    fn timed(&self, started: std::time::Instant) {
        if let Some(timer) = &self.timer {
            timer.observe(started.elapsed().as_secs_f64());
        }
    }
}
