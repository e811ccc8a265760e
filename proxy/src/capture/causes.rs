//! Which inbound request an outbound call was made for: in the modes where the sidecar sees both
//! directions of the pod (dual, transparent), an outbound HTTP record names the inbound request the app
//! was serving when it made the call (`caused_by`, that request's `uid`).
//!
//! The link is decided when the call begins, from what is known then:
//! 1. the call carries a W3C `traceparent` whose trace id an inbound request in flight also carries (an
//!    app that propagates trace context links every call, whatever the concurrency);
//! 2. else exactly one inbound request is in flight (an app serving one request at a time, as in a test
//!    run or a replay);
//! 3. else the call is not linked: a guess between concurrent requests would be wrong often enough to
//!    mislead.
//!
//! The inbound requests in flight are a short list behind a mutex, touched once when a request begins and
//! once when it ends; single-direction modes keep no list at all.
//!
//! A request `sidecar-proxy replay --mock-from` sends carries [`REPLAY_OF`], the `uid` of the recorded
//! request it replays: the calls linked to it are answered by the mock from the calls that recorded
//! request caused ([`Link::replay_of`]).

use std::sync::{Arc, Mutex, PoisonError};

/// The header a replayed request carries: the `uid` of the recorded request it replays.
pub const REPLAY_OF: &str = "sidecar-replay-of";

/// What an exchange's head says about its links, read only where links are kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints<'a> {
    pub traceparent: Option<&'a [u8]>,
    pub replay_of: Option<&'a [u8]>,
}

/// The inbound requests a sidecar is serving, for linking its outbound calls to them.
#[derive(Debug, Default)]
pub struct Causes {
    serving: Mutex<Vec<Serving>>,
}

#[derive(Debug)]
struct Serving {
    id: u64,
    trace: Option<String>,
    replay_of: Option<String>,
}

/// What a beginning exchange takes part in: an inbound request stays in flight while its link lives; an
/// outbound call knows the request it was made for.
#[derive(Debug, Default)]
pub struct Link {
    _in_flight: Option<InFlight>,
    pub caused_by: Option<u64>,
    /// Outbound: the recorded request the request it was made for replays (its [`REPLAY_OF`]).
    pub replay_of: Option<String>,
}

/// An inbound request in flight: it leaves the list when this is dropped (with its exchange, however the
/// exchange ends).
#[derive(Debug)]
pub struct InFlight {
    causes: Arc<Causes>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut serving = self.causes.lock();
        if let Some(at) = serving.iter().position(|entry| entry.id == self.id) {
            serving.swap_remove(at);
        }
    }
}

impl Causes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Serving>> {
        self.serving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inbound request `id` began, with what its head said.
    pub fn serving(self: &Arc<Self>, id: u64, hints: Hints<'_>) -> InFlight {
        let trace = hints.traceparent.and_then(trace_id).map(str::to_owned);
        let replay_of = hints
            .replay_of
            .and_then(|value| std::str::from_utf8(value).ok())
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty());
        self.lock().push(Serving {
            id,
            trace,
            replay_of,
        });
        InFlight {
            causes: self.clone(),
            id,
        }
    }

    /// The link of exchange `id` beginning in the `inbound` direction or not, with what its head said.
    pub fn link(self: &Arc<Self>, id: u64, inbound: bool, hints: Hints<'_>) -> Link {
        if inbound {
            return Link {
                _in_flight: Some(self.serving(id, hints)),
                ..Link::default()
            };
        }
        let serving = self.lock();
        let cause = cause_among(&serving, hints.traceparent);
        Link {
            _in_flight: None,
            caused_by: cause.map(|entry| entry.id),
            replay_of: cause.and_then(|entry| entry.replay_of.clone()),
        }
    }

    /// The inbound request (its record id) an outbound call that carries `traceparent` was made for.
    pub fn cause_of(&self, traceparent: Option<&[u8]>) -> Option<u64> {
        cause_among(&self.lock(), traceparent).map(|entry| entry.id)
    }
}

fn cause_among<'a>(serving: &'a [Serving], traceparent: Option<&[u8]>) -> Option<&'a Serving> {
    if let Some(trace) = traceparent.and_then(trace_id) {
        if let Some(entry) = serving
            .iter()
            .find(|entry| entry.trace.as_deref() == Some(trace))
        {
            return Some(entry);
        }
    }
    match serving {
        [only] => Some(only),
        _ => None,
    }
}

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when the value is
/// not one, or its trace id is the invalid all-zero one.
pub fn trace_id(traceparent: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(traceparent).ok()?.trim();
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then_some(trace)
}

/// What an HTTP/1 head says about its links.
pub fn hints_in_head(head: &[u8]) -> Hints<'_> {
    Hints {
        traceparent: super::raw_head::field(head, b"traceparent"),
        replay_of: super::raw_head::field(head, REPLAY_OF.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn trace_ids_are_read_from_valid_traceparents_only() {
        assert_eq!(trace_id(TRACE), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for invalid in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736",
            b"not a traceparent",
        ] {
            assert_eq!(
                trace_id(invalid),
                None,
                "{}",
                String::from_utf8_lossy(invalid)
            );
        }
    }

    #[test]
    fn the_traceparent_field_is_found_in_a_head_in_any_case() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nTraceParent:  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \r\n\r\n";
        assert_eq!(hints_in_head(head).traceparent, Some(TRACE));
        assert_eq!(hints_in_head(head).replay_of, None);
        let replayed = b"GET / HTTP/1.1\r\nSidecar-Replay-Of: 00aa-7\r\nTraceparents: no\r\n\r\n";
        assert_eq!(hints_in_head(replayed).replay_of, Some(&b"00aa-7"[..]));
        assert_eq!(hints_in_head(replayed).traceparent, None);
    }

    #[test]
    fn a_call_made_for_a_replayed_request_knows_which_recorded_request_it_replays() {
        let causes = Arc::new(Causes::default());
        let replayed = Hints {
            traceparent: None,
            replay_of: Some(b" 00aa-7 "),
        };
        let serving = causes.link(9, true, replayed);
        let call = causes.link(10, false, Hints::default());
        assert_eq!(
            (call.caused_by, call.replay_of.as_deref()),
            (Some(9), Some("00aa-7"))
        );
        drop(serving);
        let later = causes.link(11, false, Hints::default());
        assert_eq!((later.caused_by, later.replay_of), (None, None));
    }

    #[test]
    fn a_call_is_linked_by_its_trace_else_to_the_only_request_in_flight() {
        let causes = Arc::new(Causes::default());
        assert_eq!(causes.cause_of(None), None, "nothing in flight");
        let traced = |trace| Hints {
            traceparent: Some(trace),
            replay_of: None,
        };
        let first = causes.serving(1, traced(TRACE));
        assert_eq!(causes.cause_of(None), Some(1), "the only one in flight");
        let second = causes.serving(2, Hints::default());
        assert_eq!(causes.cause_of(None), None, "two in flight: no guess");
        assert_eq!(causes.cause_of(Some(TRACE)), Some(1), "by trace");
        assert_eq!(causes.cause_of(Some(OTHER)), None, "an unknown trace");
        drop(first);
        assert_eq!(causes.cause_of(Some(OTHER)), Some(2), "the only one left");
        drop(second);
        assert_eq!(causes.cause_of(None), None);
    }
}
