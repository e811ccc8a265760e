//! The shortest path through each direction, as a quick signal that the harness and the proxy work.

mod support;

use support::{start_app, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn reverse_tcp_reaches_the_app() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "tcp", Some(app.addr)).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.inbound())
        .await
        .unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("GET /hello HTTP/1.1"), "{response}");
}

#[tokio::test]
async fn forward_http_reaches_the_named_host() {
    let app = start_app().await;
    let proxy = start_proxy("forward", "http", None).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.outbound())
        .await
        .unwrap();
    let request = format!(
        "GET http://localhost:{}/hello HTTP/1.1\r\nhost: localhost:{}\r\nconnection: close\r\n\r\n",
        app.addr.port(),
        app.addr.port()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("GET /hello HTTP/1.1"), "{response}");
}
