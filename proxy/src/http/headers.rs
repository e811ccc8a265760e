//! Header rules a proxy owes both sides: hop-by-hop headers end at the proxy (RFC 9110 §7.6.1), and the
//! app learns who really called it through X-Forwarded-For / X-Forwarded-Proto.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Connection-specific headers of RFC 9110 §7.6.1 plus the de-facto `Proxy-Connection` and `Keep-Alive`.
/// `Trailer` is deliberately absent: it describes the message, and hyper's HTTP/1 encoder only sends the
/// trailer fields that a `Trailer` header declares.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
///
/// `TE: trailers` survives: it is how gRPC over HTTP/2 says it accepts trailers, and HTTP/2 allows it.
/// `Upgrade` is removed here and restored by the upgrade path when an upgrade is really being proxied.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let keeps_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    if keeps_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Appends the caller's address to X-Forwarded-For and records the scheme it used.
pub fn add_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str) {
    // Every X-Forwarded-For line counts: a chain split over repeated headers is one list (RFC 9110 §5.3).
    let mut chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let client = client.to_string();
    chain.push(&client);
    let forwarded_for = chain.join(", ");
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_hop_by_hop_and_what_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-session"),
        );
        headers.insert("x-session", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-app", HeaderValue::from_static("kept"));
        remove_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-app"]);
    }

    #[test]
    fn appends_to_an_existing_forwarded_chain() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        add_forwarded(&mut headers, "10.0.0.7".parse().unwrap(), "http");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
    }
}
