//! `http_forward`: the forward proxy's HTTP path around hyper. A scripted client (see [`crate::scripted`])
//! talks to [`sidecar_proxy::http::connection::serve`], the function the outbound listener serves HTTP
//! with, and every request hyper accepts goes through the forward path's own functions instead of being
//! sent anywhere (a fuzz target must never dial what the input names):
//!
//! - CONNECT: [`connect_target`] on the authority-form target;
//! - absolute-form `http://`: [`target_of`] (the record's target) and [`host_header`] (the Host sent upstream);
//! - every request: [`framing::check_request`] (transfer codings a proxy must not pass on),
//!   [`remove_hop_by_hop`], the upgrade check, and [`add_forwarded`] (the reverse proxy's header rule, on
//!   the same hostile headers).
//!
//! Each is checked for what it promises: a CONNECT target keeps the port and turns IP literals into IPs,
//! the Host header never carries userinfo and is always a valid header value (else the client's own Host
//! would go upstream), no hop-by-hop header or header named by `Connection` survives, and the caller's
//! address ends the X-Forwarded-For chain.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Uri};
use sidecar_proxy::connection::Connection;
use sidecar_proxy::http::body::{text_response, ProxyBody};
use sidecar_proxy::http::connection::{self, ServeOptions};
use sidecar_proxy::http::framing;
use sidecar_proxy::http::headers::{add_forwarded, remove_hop_by_hop};
use sidecar_proxy::http::upgrade;
use sidecar_proxy::metrics::Metrics;
use sidecar_proxy::net::{Host, Target};
use sidecar_proxy::options::DEFAULT_MAX_REQUEST_HEAD;
use sidecar_proxy::outbound::http::{connect_target, host_header, target_of};
use tokio_util::sync::CancellationToken;

use crate::scripted::{run_to_end, ClientScript, ScriptedClient};

/// The address the scripted client connects from.
const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 40000);

/// Headers that end at the proxy whatever `Connection` says (RFC 9110 §7.6.1, plus the de-facto ones).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "transfer-encoding",
    "upgrade",
    "te",
];

thread_local! {
    /// Built once per thread: a metrics registry per input would cost more than the input.
    static CONTEXT: Connection = Connection::new(
        None,
        Arc::new(Metrics::new()),
        "outbound",
        "forward",
        "http",
        CLIENT,
    );
}

pub fn http_forward(data: &[u8]) {
    let script = ClientScript::parse(data);
    let (client, written) = ScriptedClient::new(&script);
    let context = CONTEXT.with(Connection::clone);
    // As the outbound listener serves: HTTP/1 only, the default head limit. The head timeout never
    // fires: the client has closed.
    let options = ServeOptions {
        handshake_timeout: Duration::from_secs(30),
        accept_h2: false,
        max_request_head: DEFAULT_MAX_REQUEST_HEAD,
    };
    run_to_end(
        "forward proxy HTTP connection",
        connection::serve(
            client,
            options,
            CancellationToken::new(),
            &context,
            |request| async move { Ok::<_, Infallible>(forward_path(request)) },
        ),
    );
    let written = written.bytes();
    // A client that opened with SOCKS or TLS bytes gets that protocol's refusal instead (and only that).
    use sidecar_proxy::http::wrong_protocol::WrongProtocol;
    let refusal = [
        WrongProtocol::Socks4,
        WrongProtocol::Socks5,
        WrongProtocol::Tls,
    ]
    .iter()
    .any(|wrong| written[..] == *wrong.refusal());
    assert!(
        written.is_empty() || written.starts_with(b"HTTP/1.") || refusal,
        "the client got something other than an HTTP/1 response: {:?}",
        String::from_utf8_lossy(&written[..written.len().min(64)])
    );
}

/// What the forward proxy does with one request, up to the point where it would dial.
fn forward_path<B>(request: Request<B>) -> Response<ProxyBody> {
    let (mut parts, _unread_body) = request.into_parts();
    let status = if parts.method == Method::CONNECT {
        match connect_target(&parts.uri) {
            Some(target) => {
                check_connect_target(&parts.uri, &target);
                StatusCode::OK
            }
            None => StatusCode::BAD_REQUEST,
        }
    } else {
        match (parts.uri.scheme_str(), parts.uri.authority()) {
            (Some("http"), Some(authority)) => {
                check_absolute_form(authority);
                StatusCode::OK
            }
            _ => StatusCode::BAD_REQUEST,
        }
    };

    // Before hop-by-hop removal, which drops Transfer-Encoding (as the forward path does).
    if let Err(refusal) = framing::check_request(&parts.headers) {
        assert!(!refusal.reason.contains('\n'), "a refusal is one line");
        return text_response(refusal.status, refusal.reason);
    }
    check_framing_accepted(&parts.headers);

    let original = parts.headers.clone();
    let upgrade_protocol = upgrade::requested(&parts.headers);
    remove_hop_by_hop(&mut parts.headers);
    check_hop_by_hop_removed(&original, &parts.headers);
    if let Some(protocol) = upgrade_protocol {
        upgrade::restore_headers(&mut parts.headers, protocol.clone());
        assert_eq!(parts.headers.get(header::UPGRADE), Some(&protocol));
    }
    add_forwarded(&mut parts.headers, CLIENT.ip(), "http");
    check_forwarded(&parts.headers);

    text_response(status, "fuzz: the forward path ran without dialing")
}

fn check_connect_target(uri: &Uri, target: &Target) {
    let authority = uri
        .authority()
        .expect("connect_target found a target, so there is an authority");
    assert_eq!(Some(target.port), authority.port_u16(), "CONNECT port");
    match &target.host {
        Host::Ip(_) => {}
        Host::Name(name) => {
            assert_eq!(name, authority.host(), "CONNECT host name");
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            assert!(
                bare.parse::<IpAddr>().is_err(),
                "IP literal {name:?} kept as a host name"
            );
        }
    }
    // The target as records and logs show it must read back as the same authority.
    let shown = target.to_string();
    let reread: Authority = shown
        .parse()
        .unwrap_or_else(|e| panic!("CONNECT target {shown:?} is not an authority: {e}"));
    assert_eq!(reread.port_u16(), Some(target.port), "port of {shown:?}");
}

fn check_absolute_form(authority: &Authority) {
    let target = target_of(authority);
    let port = authority.port_u16().unwrap_or(80);
    assert!(
        target.ends_with(&format!(":{port}")),
        "target {target:?} must end with the port {port}"
    );
    let host = host_header(authority);
    assert!(
        !host.contains('@'),
        "userinfo reached the Host header: {host:?}"
    );
    assert!(
        !target.contains('@'),
        "userinfo reached the record's target: {target:?}"
    );
    assert!(
        HeaderValue::from_str(&host).is_ok(),
        "Host {host:?} is not a header value, so the client's own Host would go upstream"
    );
}

/// What framing lets through: no Transfer-Encoding, or `chunked` alone.
fn check_framing_accepted(headers: &HeaderMap) {
    let codings: Vec<String> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|coding| String::from_utf8_lossy(coding).trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty())
        .collect();
    assert!(
        codings.is_empty() || codings == ["chunked"],
        "framing accepted Transfer-Encoding {codings:?}"
    );
}

fn check_hop_by_hop_removed(original: &HeaderMap, filtered: &HeaderMap) {
    for name in HOP_BY_HOP {
        let left: Vec<&HeaderValue> = filtered.get_all(name).iter().collect();
        let only_te_trailers = name == "te" && left.iter().all(|value| *value == "trailers");
        assert!(
            left.is_empty() || only_te_trailers,
            "hop-by-hop {name} survived: {left:?}"
        );
    }
    let named = original
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
    for name in named {
        // `Connection: te` names TE, and `TE: trailers` is still kept on purpose.
        if name != header::TE {
            assert!(
                !filtered.contains_key(&name),
                "{name}, named by Connection, survived"
            );
        }
    }
    // Every other header passes untouched, in order.
    for (name, value) in original {
        let dropped = HOP_BY_HOP.contains(&name.as_str())
            || original
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()));
        if !dropped {
            assert!(
                filtered.get_all(name).iter().any(|kept| kept == value),
                "end-to-end header {name} lost its value {value:?}"
            );
        }
    }
}

fn check_forwarded(headers: &HeaderMap) {
    let chain: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(chain.len(), 1, "one X-Forwarded-For line: {chain:?}");
    let last = chain[0]
        .to_str()
        .ok()
        .and_then(|chain| chain.rsplit(',').next())
        .map(str::trim);
    assert_eq!(
        last,
        Some(CLIENT.ip().to_string().as_str()),
        "the caller ends X-Forwarded-For"
    );
    assert_eq!(
        headers.get_all("x-forwarded-proto").iter().count(),
        1,
        "one X-Forwarded-Proto"
    );
}
