//! HTTP records from every mode that carries HTTP: reverse, forward absolute-form, HTTP/2 with prior
//! knowledge, and cleartext HTTP/1 inside CONNECT, SOCKS and tcp relays, each checked field by field.

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rstest::rstest;
use sidecar_proxy::capture::record::{HttpExchange, HttpRequest};
use tokio::net::TcpStream;

use crate::support::capture::{start_capturing_proxy, RawHttp};
use crate::support::start_app;
use crate::{
    assert_http_record, assert_unique_ids, by_url, check_envelope, expected_response, http_detail,
    open_carrier, whole, Carrier, Route, Sent,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http_records_get_and_post_field_by_field() {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy("reverse", "http", Some(app.addr), |_| {}).await;

    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let mut conn = RawHttp::new(stream);
    let get = Sent::new(
        "GET",
        "/orders/7?verbose=1",
        &[
            ("Host", "orders.shop.svc:4143"),
            ("User-Agent", "capture-test/1"),
            ("X-Request-Id", "get-1"),
            ("Accept", "*/*"),
        ],
    );
    let got_get = conn.exchange(&get.bytes()).await.unwrap();
    assert_eq!(got_get.status, 200);
    let post = Sent::new(
        "POST",
        "/echo",
        &[
            ("Host", "orders.shop.svc:4143"),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "post-1"),
        ],
    )
    .with_body(b"{\"item\":\"book\",\"qty\":2}");
    let got_post = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got_post.body, post.body, "the app echoes the body");

    // A second connection gets a connection id of its own.
    let other = TcpStream::connect(proxy.inbound()).await.unwrap();
    let other_client = other.local_addr().unwrap();
    let mut other = RawHttp::new(other);
    let third = Sent::new("GET", "/third", &[("Host", "orders.shop.svc:4143")]);
    let got_third = other.exchange(&third.bytes()).await.unwrap();
    drop((conn, other));

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_unique_ids(&records);
    let route = Route {
        direction: "inbound",
        proxy_type: "reverse",
        protocol: "http",
        transport: "http",
        target: "orders.shop.svc:4143".into(),
        delivered_to: Some(app.addr.to_string()),
    };
    let base = "http://orders.shop.svc:4143";
    for (record, sent, got, client, path) in [
        (
            by_url(&records, "/orders/7?verbose=1"),
            &get,
            &got_get,
            client,
            "/orders/7?verbose=1",
        ),
        (by_url(&records, "/echo"), &post, &got_post, client, "/echo"),
        (
            by_url(&records, "/third"),
            &third,
            &got_third,
            other_client,
            "/third",
        ),
    ] {
        let expected = HttpExchange {
            request: sent.expected(&format!("{base}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
            mock: None,
        };
        assert_http_record(record, &route, client, began, expected);
    }
    let get_record = by_url(&records, "/orders/7?verbose=1");
    let post_record = by_url(&records, "/echo");
    assert_eq!(get_record.connection, post_record.connection, "keep-alive");
    assert_ne!(get_record.connection, by_url(&records, "/third").connection);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_http_absolute_form_is_recorded_outbound_with_the_host_name() {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy("forward", "http", None, |_| {}).await;
    let authority = format!("localhost:{}", app.addr.port());

    let stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let mut conn = RawHttp::new(stream);
    let get = Sent::new(
        "GET",
        format!("http://{authority}/catalog?page=2"),
        &[("Host", &authority), ("X-Request-Id", "fwd-1")],
    );
    let got_get = conn.exchange(&get.bytes()).await.unwrap();
    assert_eq!(got_get.status, 200);
    let post = Sent::new(
        "POST",
        format!("http://{authority}/echo"),
        &[("Host", &authority), ("X-Request-Id", "fwd-2")],
    )
    .with_body(b"forwarded body");
    let got_post = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got_post.body, b"forwarded body");
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let route = Route {
        direction: "outbound",
        proxy_type: "forward",
        protocol: "http",
        transport: "http",
        target: authority.clone(),
        delivered_to: None,
    };
    for (sent, got, path) in [
        (&get, &got_get, "/catalog?page=2"),
        (&post, &got_post, "/echo"),
    ] {
        let expected = HttpExchange {
            request: sent.expected(&format!("http://{authority}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
            mock: None,
        };
        assert_http_record(by_url(&records, path), &route, client, began, expected);
    }
    assert_eq!(records[0].connection, records[1].connection);
}

/// Requests to two origins on one client connection: each record names its own request's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_http_requests_to_two_origins_on_one_connection_are_recorded_with_their_own_targets(
) {
    let began = SystemTime::now();
    let (first, second) = (start_app().await, start_app().await);
    let (proxy, log) = start_capturing_proxy("forward", "http", None, |_| {}).await;
    let stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let mut conn = RawHttp::new(stream);
    let mut sent = Vec::new();
    for (app, path) in [(&first, "/one"), (&second, "/two"), (&first, "/three")] {
        let authority = format!("localhost:{}", app.addr.port());
        let request = Sent::new(
            "GET",
            format!("http://{authority}{path}"),
            &[("Host", &authority)],
        );
        let got = conn.exchange(&request.bytes()).await.unwrap();
        assert_eq!(got.status, 200, "{path}");
        sent.push((authority, path, request, got));
    }
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    for (authority, path, request, got) in &sent {
        let route = Route {
            direction: "outbound",
            proxy_type: "forward",
            protocol: "http",
            transport: "http",
            target: authority.clone(),
            delivered_to: None,
        };
        let expected = HttpExchange {
            request: request.expected(&format!("http://{authority}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
            mock: None,
        };
        assert_http_record(by_url(&records, path), &route, client, began, expected);
    }
    assert!(records
        .iter()
        .all(|r| r.connection == records[0].connection));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http2_prior_knowledge_is_recorded_as_http2() {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy("reverse", "http", Some(app.addr), |_| {}).await;

    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri("http://app.test:8080/h2/items?x=1")
        .header("x-request-id", "h2-1")
        .header("accept", "text/plain")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status, 200);
    drop(sender);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    let route = Route {
        direction: "inbound",
        proxy_type: "reverse",
        protocol: "http",
        transport: "http",
        target: "app.test:8080".into(),
        delivered_to: Some(app.addr.to_string()),
    };
    check_envelope(record, &route, client, began);
    let exchange = http_detail(record);
    assert_eq!(
        exchange.request,
        HttpRequest {
            method: "GET".into(),
            url: "http://app.test:8080/h2/items?x=1".into(),
            version: "HTTP/2.0".into(),
            headers: vec![
                ("x-request-id".into(), "h2-1".into()),
                ("accept".into(), "text/plain".into()),
            ],
            body: whole(b""),
            trailers: Vec::new(),
        }
    );
    let response = exchange.response.as_ref().expect("a response");
    assert_eq!(response.status, 200);
    let client_headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(response.headers, client_headers);
    assert_eq!(response.body, whole(&body));
    assert_eq!(exchange.error, None);
}

#[rstest]
#[case::connect_tunnel(Carrier::Connect)]
#[case::socks5(Carrier::Socks5)]
#[case::reverse_tcp(Carrier::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http_inside_a_stream_gets_one_record_per_exchange(#[case] carrier: Carrier) {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log, stream, client, route) = open_carrier(carrier, app.addr).await;
    let host = format!("localhost:{}", app.addr.port());

    let mut conn = RawHttp::new(stream);
    let get = Sent::new(
        "GET",
        "/inside/1?q=a",
        &[("Host", &host), ("X-Request-Id", "in-1"), ("Accept", "*/*")],
    );
    let got_get = conn.exchange(&get.bytes()).await.unwrap();
    assert_eq!(got_get.status, 200);
    let post = Sent::new(
        "POST",
        "/echo",
        &[("Host", &host), ("X-Request-Id", "in-2")],
    )
    .with_body(b"tunnelled body bytes");
    let got_post = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got_post.body, b"tunnelled body bytes");
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(
        records.len(),
        2,
        "one http record per exchange, no stream record: {records:#?}"
    );
    assert_unique_ids(&records);
    for (sent, got, path) in [
        (&get, &got_get, "/inside/1?q=a"),
        (&post, &got_post, "/echo"),
    ] {
        let expected = HttpExchange {
            request: sent.expected(&format!("http://{host}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
            mock: None,
        };
        assert_http_record(by_url(&records, path), &route, client, began, expected);
    }
    assert_eq!(records[0].connection, records[1].connection, "keep-alive");
}
