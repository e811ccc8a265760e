//! Idle connections for the memory scenario, opened by the harness itself: each connects through the
//! route, makes one keep-alive request (so the relay has really opened its side to the origin, and
//! the answer proves it), then stays open and silent until dropped.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::Invalid;
use crate::http_client;
use crate::route::{self, Route};

/// Connections being opened at once: quick, without a SYN flood that a listener's backlog drops.
const PARALLEL: usize = 64;

/// Open connections; dropping this closes them all.
#[derive(Debug)]
pub struct IdleConnections {
    streams: Vec<TcpStream>,
}

impl IdleConnections {
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

pub async fn open(
    route: Route,
    origin_port: u16,
    path: &str,
    expected_body: &[u8],
    count: usize,
) -> anyhow::Result<Result<IdleConnections, Invalid>> {
    let expected: Arc<[u8]> = expected_body.into();
    let path: Arc<str> = path.into();
    let mut opening = JoinSet::new();
    let mut streams = Vec::with_capacity(count);
    let mut started = 0;
    while streams.len() < count {
        while opening.len() < PARALLEL && started < count {
            opening.spawn(open_one(route, origin_port, path.clone(), expected.clone()));
            started += 1;
        }
        match opening.join_next().await {
            Some(Ok(Ok(stream))) => streams.push(stream),
            Some(Ok(Err(error))) => {
                return Ok(Err(Invalid(format!(
                    "idle connection {} of {count} failed: {error:#}",
                    streams.len() + 1
                ))))
            }
            Some(Err(panicked)) => anyhow::bail!("an idle-connection task failed: {panicked}"),
            None => break,
        }
    }
    Ok(Ok(IdleConnections { streams }))
}

async fn open_one(
    route: Route,
    origin_port: u16,
    path: Arc<str>,
    expected: Arc<[u8]>,
) -> anyhow::Result<TcpStream> {
    let stream = route::open(route, origin_port).await?;
    let target = route.request_target(origin_port, &path);
    let host = format!("127.0.0.1:{origin_port}");
    let (response, stream) = tokio::time::timeout(
        route::HANDSHAKE_TIMEOUT,
        http_client::get(stream, &target, &host, true),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no response within {:?}", route::HANDSHAKE_TIMEOUT))??;
    if response.status != 200 || *response.body != *expected {
        anyhow::bail!(
            "answered {} with a {}-byte body instead of the origin's",
            response.status,
            response.body.len()
        );
    }
    Ok(stream)
}
