//! Dual mode links each outbound call to the inbound request the app made it for (`caused_by`): by the
//! W3C `traceparent` the call carries, else to the only inbound request in flight; concurrent requests
//! without trace context leave their calls unlinked rather than guessed. The app is
//! [`crate::support::calling_app`].

use std::net::SocketAddr;

use crate::support::calling_app::{get_on_new_connection, start_calling_app};
use crate::support::capture::start_capturing_proxy;
use crate::support::start_app;
use sidecar_proxy::capture::record::{Detail, Record};

const TRACE_A: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_B: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The app's call for a request to `path`.
fn called_for(path: &str) -> String {
    format!("/called-for{path}")
}

/// What the dependency (`start_app`) answers first: the call's request line.
fn first_line(body: String) -> String {
    body.lines().next().unwrap_or_default().to_owned()
}

/// One request to the sidecar's inbound listener, on its own connection.
async fn call_app(inbound: SocketAddr, path: &str, trace: Option<&str>) -> String {
    let trace = trace.map(|trace| http::HeaderValue::from_str(trace).unwrap());
    let body = get_on_new_connection(inbound, path, "app.test", trace).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// Each HTTP record's direction, path, uid and `caused_by`.
fn exchanges(records: &[Record]) -> Vec<(String, String, String, Option<String>)> {
    records
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Http(exchange) => {
                let url = &exchange.request.url;
                let path = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_owned()))
                    .unwrap_or_else(|| url.clone());
                Some((
                    record.direction.clone(),
                    path,
                    record.uid.clone(),
                    record.caused_by.clone(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// The uid of the inbound record for `path`, and the `caused_by` of the outbound call made for it.
fn link_of(
    seen: &[(String, String, String, Option<String>)],
    path: &str,
) -> (String, Option<String>) {
    let inbound = seen
        .iter()
        .find(|(direction, url, ..)| direction == "inbound" && url == path)
        .unwrap_or_else(|| panic!("an inbound record for {path}: {seen:#?}"));
    let outbound = seen
        .iter()
        .find(|(direction, url, ..)| {
            direction == "outbound"
                && *url == format!("/called-for{}", path.split('?').next().unwrap())
        })
        .unwrap_or_else(|| panic!("an outbound record for {path}: {seen:#?}"));
    assert_eq!(inbound.3, None, "an inbound record has no cause");
    (inbound.2.clone(), outbound.3.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_mode_links_each_outbound_call_to_the_inbound_request_it_was_made_for() {
    let dependency = start_app().await;
    let app = start_calling_app(dependency.addr, called_for).await;
    let (proxy, log) = start_capturing_proxy("dual", "http", Some(app.addr), |_| {}).await;
    app.use_proxy(proxy.outbound());

    // One at a time: each call is linked to the only request in flight.
    for path in ["/first", "/second"] {
        let answer = first_line(call_app(proxy.inbound(), path, None).await);
        assert_eq!(answer, format!("GET /called-for{path} HTTP/1.1"));
    }
    // Two at once, with trace context: each call is linked by its trace.
    let (a, b) = tokio::join!(
        call_app(proxy.inbound(), "/together?traced=a", Some(TRACE_A)),
        call_app(proxy.inbound(), "/together?traced=b", Some(TRACE_B)),
    );
    let (a, b) = (first_line(a), first_line(b));
    assert_eq!(
        (a.as_str(), b.as_str()),
        (
            "GET /called-for/together HTTP/1.1",
            "GET /called-for/together HTTP/1.1"
        )
    );

    let records = log.records(proxy).await;
    let seen = exchanges(&records);
    for path in ["/first", "/second"] {
        let (uid, caused_by) = link_of(&seen, path);
        assert_eq!(
            caused_by.as_deref(),
            Some(uid.as_str()),
            "{path}: {seen:#?}"
        );
    }
    // The two concurrent calls have the same path; tell them apart by their traceparent's record.
    let traced: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Http(exchange) => exchange
                .request
                .headers
                .iter()
                .find(|(name, _)| name == "traceparent")
                .map(|(_, value)| {
                    (
                        record.direction.clone(),
                        value.clone(),
                        record.uid.clone(),
                        record.caused_by.clone(),
                    )
                }),
            _ => None,
        })
        .collect();
    for trace in [TRACE_A, TRACE_B] {
        let inbound = traced
            .iter()
            .find(|(direction, value, ..)| direction == "inbound" && value == trace)
            .unwrap_or_else(|| panic!("the inbound request with {trace}: {traced:#?}"));
        let outbound = traced
            .iter()
            .find(|(direction, value, ..)| direction == "outbound" && value == trace)
            .unwrap_or_else(|| panic!("the call with {trace}: {traced:#?}"));
        assert_eq!(
            outbound.3.as_deref(),
            Some(inbound.2.as_str()),
            "{trace}: {traced:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_without_trace_context_leave_their_calls_unlinked() {
    let dependency = start_app().await;
    let app = start_calling_app(dependency.addr, called_for).await;
    let (proxy, log) = start_capturing_proxy("dual", "http", Some(app.addr), |_| {}).await;
    app.use_proxy(proxy.outbound());

    let (a, b) = tokio::join!(
        call_app(proxy.inbound(), "/together?untraced=a", None),
        call_app(proxy.inbound(), "/together?untraced=b", None),
    );
    assert_eq!(a, b);

    let records = log.records(proxy).await;
    let seen = exchanges(&records);
    let outbound: Vec<_> = seen
        .iter()
        .filter(|(direction, ..)| direction == "outbound")
        .collect();
    assert_eq!(outbound.len(), 2, "{seen:#?}");
    assert!(
        outbound.iter().all(|(.., caused_by)| caused_by.is_none()),
        "two requests were in flight and nothing told them apart: {seen:#?}"
    );
}
