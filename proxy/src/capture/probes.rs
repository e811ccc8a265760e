//! Kubelet probes: requests whose `User-Agent` starts with `kube-probe/` (the kubelet's HTTP probes send
//! `kube-probe/<major>.<minor>`). They come every few seconds for the pod's whole life and carry nothing
//! about the app's traffic, so they are not recorded unless `--capture-probes` asks for them; each one
//! skipped is counted in `sidecar_capture_probes_skipped_total`. Only inbound requests are taken for
//! probes ([`is_probe_direction`]).
//!
//! Both paths that record HTTP ask here: the HTTP listeners with the parsed request head, and the tap
//! (HTTP seen inside a relayed stream) with the raw HTTP/1 head or the decoded HTTP/2 fields.

/// Whether requests in `direction` may be probes: only `inbound` ones. The kubelet probes the pod from
/// outside; a request the app sends out with that User-Agent is the app's own traffic, and skipping it
/// would let any client hide its calls from the capture.
pub fn is_probe_direction(direction: &str) -> bool {
    direction == "inbound"
}

/// What the kubelet's HTTP probes put at the start of their `User-Agent`.
pub const KUBE_PROBE_PREFIX: &[u8] = b"kube-probe/";

/// Whether a `User-Agent` value is the kubelet's.
pub fn is_probe_user_agent(value: &[u8]) -> bool {
    value
        .trim_ascii_start()
        .get(..KUBE_PROBE_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(KUBE_PROBE_PREFIX))
}

/// Whether parsed request headers are a kubelet probe's.
pub fn is_probe_request(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::USER_AGENT)
        .iter()
        .any(|value| is_probe_user_agent(value.as_bytes()))
}

/// Whether a raw HTTP/1 request head (request line, fields, blank line) is a kubelet probe's. Scans the
/// field lines only: the head was already framed by the tap, and the full parse happens later, on the
/// capture writer's thread, for the heads that are recorded.
pub fn is_probe_http1_head(head: &[u8]) -> bool {
    super::raw_head::fields(head)
        .any(|(name, value)| name.eq_ignore_ascii_case(b"user-agent") && is_probe_user_agent(value))
}

/// Whether HTTP/2 request fields (as HPACK decoded them, lowercase names) are a kubelet probe's.
pub fn is_probe_h2_fields<N: AsRef<[u8]>, V: AsRef<[u8]>>(fields: &[(N, V)]) -> bool {
    fields
        .iter()
        .any(|(name, value)| name.as_ref() == b"user-agent" && is_probe_user_agent(value.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelets_user_agent_and_nothing_else() {
        for probe in [
            &b"kube-probe/1.33"[..],
            b"kube-probe/1.29+",
            b"Kube-Probe/1.30",
            b" kube-probe/1",
        ] {
            assert!(is_probe_user_agent(probe), "{probe:?}");
        }
        for other in [
            &b"curl/8.5.0"[..],
            b"kube-probe",
            b"my-kube-probe/1.0",
            b"",
            b"kube-",
        ] {
            assert!(!is_probe_user_agent(other), "{other:?}");
        }
    }

    #[test]
    fn an_http1_head_is_scanned_field_by_field() {
        let probe = b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.7:8080\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n";
        assert!(is_probe_http1_head(probe));
        let app = b"GET /healthz HTTP/1.1\r\nHost: app\r\nuser-agent: curl/8.5.0\r\n\r\n";
        assert!(!is_probe_http1_head(app));
        // Only a field counts: the same text in the request target or another field's value does not.
        let disguised = b"GET /kube-probe/ HTTP/1.1\r\nX-Note: user-agent: kube-probe/1.33\r\n\r\n";
        assert!(!is_probe_http1_head(disguised));
    }

    #[test]
    fn h2_fields_and_parsed_headers() {
        assert!(is_probe_h2_fields(&[
            (&b":method"[..], &b"GET"[..]),
            (b"user-agent", b"kube-probe/1.33"),
        ]));
        assert!(!is_probe_h2_fields(&[(
            &b"user-agent"[..],
            &b"grpc-go/1.60"[..]
        )]));
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::USER_AGENT, "kube-probe/1.33".parse().unwrap());
        assert!(is_probe_request(&headers));
        headers.insert(
            http::header::USER_AGENT,
            "Go-http-client/1.1".parse().unwrap(),
        );
        assert!(!is_probe_request(&headers));
    }
}
