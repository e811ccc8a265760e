//! Relaying bodies once the app's response head has come: the response body to the caller and, when the
//! app answered before the request body ended, the rest of the request body to the app at the same time.
//!
//! The two directions are separate futures over split halves of both sockets, driven together by the
//! exchange (`respond`). An app may answer while it reads (an echo streaming the body back, a gRPC-style
//! bidirectional stream over HTTP/1): if the engine relayed one direction and then the other, the app
//! would wait for the body while the engine waited for the response, and both would stall once the
//! socket buffers filled.
//!
//! The tap sees both directions; it sits in a `Mutex` so that both futures of the one task can show it
//! their bytes (never contended: the futures run on the one task, and no lock spans an `.await`).

use std::sync::{Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::body::{filtered_trailers, BodyFollower, Framing};
use super::buffer::Buffer;
use super::request::Request;
use super::response::Response;
use crate::budget::ConnectionBudget;
use crate::io::Observer;
use crate::tap::HttpTap;

/// The tap of the exchange, when capture is on, shared by the two directions.
pub type SharedTap = Mutex<Option<HttpTap>>;

/// Shows the tap, if any, what `show` does with it.
fn observe(tap: &SharedTap, show: impl FnOnce(&mut HttpTap)) {
    if let Some(tap) = tap.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        show(tap);
    }
}

/// Why relaying the response stopped before its body ended: the caller's connection ends, with the
/// reason when it did not end cleanly (the app cutting its body short ends it without one).
pub struct Cut(pub Option<String>);

/// Relays the response body from `app` to `caller`, `head` (the rewritten head) first, in one write with
/// the first body bytes. Bytes already read from the app wait in `from_app`.
#[allow(clippy::too_many_arguments)]
pub async fn response_body<R, W>(
    app: &mut R,
    caller: &mut W,
    from_app: &mut Buffer,
    mut head: Vec<u8>,
    body: &mut BodyFollower,
    response: &Response,
    tap: &SharedTap,
    account: &ConnectionBudget,
) -> Result<(), Cut>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if !body.done() && !from_app.is_empty() {
            let step = match body.advance(from_app.bytes()) {
                Ok(step) => step,
                Err(why) => {
                    let _ = caller.write_all(&head).await;
                    return Err(Cut(Some(format!("the app's response body broke: {why}"))));
                }
            };
            let bytes = &from_app.bytes()[..step.consumed];
            observe(tap, |tap| tap.written(bytes));
            let forward = &bytes[..step.forward];
            // What waits for the caller is counted in the memory budget until the caller takes it: a
            // caller that takes nothing while the budget is spent is shed (`BudgetedIo`).
            account.queued(head.len() + forward.len());
            let mut sent = if head.is_empty() {
                caller.write_all(forward).await
            } else {
                head.extend_from_slice(forward);
                let sent = caller.write_all(&head).await;
                head = Vec::new();
                sent
            };
            if sent.is_ok() && body.done() && response.framing == Framing::Chunked {
                let trailers =
                    filtered_trailers(&body.take_trailers(), &response.announced_trailers);
                sent = caller.write_all(&trailers).await;
            }
            from_app.consume(step.consumed);
            sent.map_err(|e| Cut(Some(e.to_string())))?;
        }
        if !head.is_empty() {
            caller
                .write_all(&head)
                .await
                .map_err(|e| Cut(Some(e.to_string())))?;
            head = Vec::new();
        }
        if body.done() {
            return Ok(());
        }
        match from_app.read_from(app).await {
            Ok(0) if body.until_close() => {
                body.closed();
                return Ok(());
            }
            // Cut off by the app: the caller sees the end of the connection where the body stops.
            Ok(0) => return Err(Cut(None)),
            Ok(_) => {}
            Err(e) => return Err(Cut(Some(e.to_string()))),
        }
    }
}

/// Why the rest of a request body stopped on its way once the response had begun.
pub enum BodyStopped {
    /// The caller broke it (bad framing, or it left before the body's end): the exchange is over.
    ByCaller(String),
    /// The app stopped reading it (an early `413` then a close, say): its response still goes on to the
    /// caller, whose connection then closes.
    ByApp(String),
}

/// Relays the rest of the request body from `caller` to `app` (bytes already read wait in `input`),
/// trailers included.
pub async fn request_body<R, W>(
    caller: &mut R,
    app: &mut W,
    input: &mut Buffer,
    body: &mut BodyFollower,
    request: &Request,
    tap: &SharedTap,
) -> Result<(), BodyStopped>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while !body.done() {
        let step = body
            .advance(input.bytes())
            .map_err(|why| BodyStopped::ByCaller(why.to_owned()))?;
        if step.consumed == 0 {
            match input.read_from(caller).await {
                Ok(0) => {
                    return Err(BodyStopped::ByCaller(
                        "the client closed the connection before the body ended".into(),
                    ))
                }
                Ok(_) => continue,
                Err(e) => return Err(BodyStopped::ByCaller(e.to_string())),
            }
        }
        let bytes = &input.bytes()[..step.consumed];
        observe(tap, |tap| tap.read(bytes));
        let mut sent = app.write_all(&bytes[..step.forward]).await;
        if sent.is_ok() && body.done() && request.framing == Framing::Chunked {
            let trailers = filtered_trailers(&body.take_trailers(), &request.announced_trailers);
            sent = app.write_all(&trailers).await;
        }
        input.consume(step.consumed);
        sent.map_err(|e| {
            BodyStopped::ByApp(format!("the app stopped taking the request body: {e}"))
        })?;
    }
    Ok(())
}
