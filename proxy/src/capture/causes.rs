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

use std::sync::{Arc, Mutex, PoisonError};

/// The inbound requests a sidecar is serving, for linking its outbound calls to them.
#[derive(Debug, Default)]
pub struct Causes {
    serving: Mutex<Vec<Serving>>,
}

#[derive(Debug)]
struct Serving {
    id: u64,
    trace: Option<String>,
}

/// What a beginning exchange takes part in: an inbound request stays in flight while its link lives; an
/// outbound call knows the request it was made for.
#[derive(Debug, Default)]
pub struct Link {
    _in_flight: Option<InFlight>,
    pub caused_by: Option<u64>,
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

    /// Inbound request `id` began, with `traceparent` when it carried one.
    pub fn serving(self: &Arc<Self>, id: u64, traceparent: Option<&[u8]>) -> InFlight {
        let trace = traceparent.and_then(trace_id).map(str::to_owned);
        self.lock().push(Serving { id, trace });
        InFlight {
            causes: self.clone(),
            id,
        }
    }

    /// The link of exchange `id` beginning in the `inbound` direction or not, carrying `traceparent`.
    pub fn link(self: &Arc<Self>, id: u64, inbound: bool, traceparent: Option<&[u8]>) -> Link {
        if inbound {
            Link {
                _in_flight: Some(self.serving(id, traceparent)),
                caused_by: None,
            }
        } else {
            Link {
                _in_flight: None,
                caused_by: self.cause_of(traceparent),
            }
        }
    }

    /// The inbound request (its record id) an outbound call that carries `traceparent` was made for.
    pub fn cause_of(&self, traceparent: Option<&[u8]>) -> Option<u64> {
        let serving = self.lock();
        if let Some(trace) = traceparent.and_then(trace_id) {
            if let Some(entry) = serving
                .iter()
                .find(|entry| entry.trace.as_deref() == Some(trace))
            {
                return Some(entry.id);
            }
        }
        match serving.as_slice() {
            [only] => Some(only.id),
            _ => None,
        }
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

/// The `traceparent` field of an HTTP/1 head, as received (the first, if repeated).
pub fn traceparent_in_head(head: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"traceparent:";
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
            .then(|| line[NAME.len()..].trim_ascii())
    })
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
        assert_eq!(traceparent_in_head(head), Some(TRACE));
        assert_eq!(
            traceparent_in_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            None
        );
    }

    #[test]
    fn a_call_is_linked_by_its_trace_else_to_the_only_request_in_flight() {
        let causes = Arc::new(Causes::default());
        assert_eq!(causes.cause_of(None), None, "nothing in flight");
        let first = causes.serving(1, Some(TRACE));
        assert_eq!(causes.cause_of(None), Some(1), "the only one in flight");
        let second = causes.serving(2, None);
        assert_eq!(causes.cause_of(None), None, "two in flight: no guess");
        assert_eq!(causes.cause_of(Some(TRACE)), Some(1), "by trace");
        assert_eq!(causes.cause_of(Some(OTHER)), None, "an unknown trace");
        drop(first);
        assert_eq!(causes.cause_of(Some(OTHER)), Some(2), "the only one left");
        drop(second);
        assert_eq!(causes.cause_of(None), None);
    }
}
