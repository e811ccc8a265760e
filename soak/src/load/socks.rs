//! SOCKS through the dual-socks sidecar: a new SOCKS connection per request, alternating between its
//! inbound and outbound listeners, with an HTTP request to the origin through each tunnel (the inbound
//! listener delivers to its app, the origin's HTTP server, whatever the client names). SOCKS5
//! alternates IP and domain targets; SOCKS4a always names a domain (`localhost`, which the sidecar
//! resolves to 127.0.0.1 first), which is what makes it 4a.

use anyhow::Context as _;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

use super::http::get_small_through;
use super::Worker;

#[derive(Clone, Copy, Debug)]
pub enum Version {
    Five,
    FourA,
}

pub async fn exchanges(mut worker: Worker, version: Version) {
    while worker.next().await {
        let routes = &worker.routes;
        let proxy = if worker.seq.is_multiple_of(2) {
            routes.socks_inbound
        } else {
            routes.socks_outbound
        };
        let origin = routes.origin_http;
        let id = format!("{}-{}", worker.id, worker.seq);
        let by_name = matches!(version, Version::FourA) || (worker.seq / 2).is_multiple_of(2);
        worker
            .record(async {
                match version {
                    Version::Five if by_name => {
                        let stream = Socks5Stream::connect(proxy, ("localhost", origin.port()))
                            .await
                            .with_context(|| {
                                format!("SOCKS5 via {proxy} to localhost:{}", origin.port())
                            })?;
                        get_small_through(stream, origin, &id).await
                    }
                    Version::Five => {
                        let stream = Socks5Stream::connect(proxy, origin)
                            .await
                            .with_context(|| format!("SOCKS5 via {proxy} to {origin}"))?;
                        get_small_through(stream, origin, &id).await
                    }
                    Version::FourA => {
                        let stream = Socks4Stream::connect(proxy, ("localhost", origin.port()))
                            .await
                            .with_context(|| {
                                format!("SOCKS4a via {proxy} to localhost:{}", origin.port())
                            })?;
                        get_small_through(stream, origin, &id).await
                    }
                }
            })
            .await;
    }
}
