//! Idle connections for the memory scenario, opened by the harness itself: each connects through the
//! route, makes one keep-alive request (so the relay has really opened its side to the origin, and
//! the answer proves it), then stays open and silent until dropped.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::Invalid;
use crate::route::{self, Route};

/// Connections being opened at once: quick, without a SYN flood that a listener's backlog drops.
const PARALLEL: usize = 64;

/// `count` open connections; dropping them closes them.
pub async fn open(
    route: Route,
    origin_port: u16,
    path: &str,
    expected_body: &[u8],
    count: usize,
) -> anyhow::Result<Result<Vec<TcpStream>, Invalid>> {
    let expected: Arc<[u8]> = expected_body.into();
    let path: Arc<str> = path.into();
    let mut opening = JoinSet::new();
    let mut streams = Vec::with_capacity(count);
    let mut started = 0;
    while streams.len() < count {
        while opening.len() < PARALLEL && started < count {
            let (path, expected) = (path.clone(), expected.clone());
            opening.spawn(async move {
                let (response, stream) = route::get(route, origin_port, &path, true).await?;
                response
                    .from_origin(&expected)
                    .map_err(anyhow::Error::msg)?;
                anyhow::Ok(stream)
            });
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
    Ok(Ok(streams))
}
