//! `transparent_detect`: what transparent mode reads off a redirected connection before deciding how to
//! proxy it ([`sidecar_proxy::detect`]): the first bytes, whether they are an HTTP/1 request line or the
//! HTTP/2 preface, and the server name of a TLS ClientHello. The client is scripted (see
//! [`crate::scripted`]); the upstream stays silent, as a server waiting for its client does.
//!
//! Checked: what detection hands back for replay is exactly the start of what the client sent (a byte
//! lost or changed here corrupts the proxied stream), never more than one TLS record's worth, and a
//! server name found in a hello is printable and present in the hello's bytes.

use sidecar_proxy::detect::{
    first_bytes, is_h2_preface, is_http_request, tls, FirstBytes, DETECT_TIMEOUT,
};
use sidecar_proxy::io::PrefixedIo;

use crate::scripted::{run_to_end, ClientScript, ScriptedClient, SilentPeer};

/// The most bytes detection reads before deciding: one TLS record (16 KiB) and its header.
const MAX_SNIFF: usize = 16 * 1024 + 5;

pub fn transparent_detect(data: &[u8]) {
    let script = ClientScript::parse(data);
    let (mut client, written) = ScriptedClient::new(&script);
    let first = run_to_end("protocol detection", async move {
        first_bytes(
            &mut client,
            &mut PrefixedIo::new(Vec::new(), SilentPeer),
            DETECT_TIMEOUT,
        )
        .await
    })
    .expect("reading the in-memory client cannot fail");
    assert!(written.bytes().is_empty(), "detection only reads");

    match first {
        FirstBytes::Client(bytes) => {
            assert!(!bytes.is_empty(), "a client that sent nothing is silence");
            assert!(
                script.bytes.starts_with(&bytes),
                "replayed bytes differ from what the client sent"
            );
            assert!(bytes.len() <= MAX_SNIFF, "read {} bytes", bytes.len());
            classify(&bytes);
        }
        FirstBytes::Silence => assert!(script.bytes.is_empty(), "bytes were sent"),
        FirstBytes::Upstream(_) => panic!("the silent upstream spoke"),
    }
    // The whole stream as well: detection's checks see any prefix, so they must take any bytes.
    classify(script.bytes);
}

fn classify(bytes: &[u8]) {
    let _ = is_http_request(bytes);
    let _ = is_h2_preface(bytes);
    let _ = tls::is_tls_handshake(bytes);
    let _ = tls::first_record_len(bytes);
    if let Some(name) = tls::client_hello_sni(bytes) {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
            "server name {name:?}"
        );
        assert!(
            bytes
                .windows(name.len())
                .any(|window| window == name.as_bytes()),
            "server name {name:?} is not in the hello"
        );
    }
}
