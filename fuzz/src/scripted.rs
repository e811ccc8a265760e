//! A client connection made of the fuzz input, for the targets that parse a byte stream (SOCKS, HTTP,
//! protocol detection).
//!
//! Code that parses a whole message from one read can still break when a field is split across two, or
//! when a read finds nothing yet, so the input decides both what the client sends and how it arrives:
//!
//! ```text
//! byte 0         n, the number of chunk-plan bytes that follow
//! bytes 1..=n    the chunk plan, one byte per read, used in turn and then again from the start:
//!                  bit 7     the read first finds nothing (Pending, woken at once)
//!                  bits 0-6  the most bytes this read delivers; 0 means as many as asked for
//! the rest       the bytes the client sends; then it closes its side (end of stream)
//! ```
//!
//! A seed is `\x00` followed by a real client's bytes: no plan, every read gets all it asks for.
//! Everything the server writes is kept, so a target can check the replies.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a target's future may take before it counts as hung. Every target's peer has closed by the
/// time its bytes are used up, so a correct server finishes in microseconds; a future still pending after
/// this long waits for something that will never happen.
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// The fuzz input split into its chunk plan and the client's bytes.
pub struct ClientScript<'a> {
    pub plan: &'a [u8],
    pub bytes: &'a [u8],
}

impl<'a> ClientScript<'a> {
    /// Splits an input as the module documentation lays it out; a plan longer than the input is cut short.
    pub fn parse(data: &'a [u8]) -> ClientScript<'a> {
        let Some((&plan_len, rest)) = data.split_first() else {
            return ClientScript {
                plan: &[],
                bytes: &[],
            };
        };
        let (plan, bytes) = rest.split_at(usize::from(plan_len).min(rest.len()));
        ClientScript { plan, bytes }
    }
}

/// The server's side of the scripted connection: reads follow the plan, writes are kept.
pub struct ScriptedClient {
    bytes: Vec<u8>,
    position: usize,
    plan: Vec<u8>,
    step: usize,
    /// Whether this read step has already returned Pending once (a step's Pending comes before its data).
    waited: bool,
    written: Arc<Mutex<Vec<u8>>>,
}

/// What the server wrote to the client, readable after the server's stream is gone.
#[derive(Clone)]
pub struct Written(Arc<Mutex<Vec<u8>>>);

impl Written {
    pub fn bytes(&self) -> Vec<u8> {
        lock(&self.0).clone()
    }
}

impl ScriptedClient {
    pub fn new(script: &ClientScript<'_>) -> (ScriptedClient, Written) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let client = ScriptedClient {
            bytes: script.bytes.to_vec(),
            position: 0,
            plan: script.plan.to_vec(),
            step: 0,
            waited: false,
            written: written.clone(),
        };
        (client, Written(written))
    }
}

impl AsyncRead for ScriptedClient {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let rule = match this.plan.len() {
            0 => 0,
            len => this.plan[this.step % len],
        };
        if rule & 0x80 != 0 && !this.waited {
            this.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let limit = match usize::from(rule & 0x7f) {
            0 => usize::MAX,
            limit => limit,
        };
        let left = &this.bytes[this.position..];
        let n = left.len().min(buf.remaining()).min(limit);
        buf.put_slice(&left[..n]);
        this.position += n;
        this.step += 1;
        this.waited = false;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ScriptedClient {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.written).extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A peer that never sends anything and never closes (an upstream waiting for the client to speak).
pub struct SilentPeer;

impl AsyncRead for SilentPeer {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

fn lock(bytes: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    // A panic while the lock was held is itself the finding; the bytes are still readable.
    bytes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// One runtime per thread, reused by every input: building one costs more than most inputs take.
    /// Current-thread, so a run is deterministic and a panic surfaces in the caller.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime with timers");
}

/// Runs a target's future to completion; one that is still pending after [`HANG_LIMIT`] is a hang, and
/// panics so the fuzzer (or the corpus test) reports the input.
pub fn run_to_end<F: Future>(what: &str, future: F) -> F::Output {
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            match tokio::time::timeout(HANG_LIMIT, future).await {
                Ok(output) => output,
                Err(_) => {
                    panic!("{what} still running after {HANG_LIMIT:?} with its peer closed: hung")
                }
            }
        })
    })
}
