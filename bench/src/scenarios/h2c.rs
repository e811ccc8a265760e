//! Scenario 8: HTTP/2 cleartext with prior knowledge (h2c), h2load's request rate straight to the
//! origin's h2c server or through a tcp relay in front of it. Through our reverse tcp relay with
//! capture on, the capture tap finds the HTTP/2 inside the stream and records every exchange; with
//! capture off the bytes are relayed and nothing more.

use super::Bench;

use crate::clients::h2load::{self, H2Load};
use crate::contenders::SMALL_PATH;
use crate::results::{Figure, Outcome};

/// h2load's rate at `port` with [`h2load::CLIENTS`] connections × [`h2load::STREAMS`] streams, with as
/// many threads as wrk has (never more than connections), for the measurement's time.
pub async fn measure(bench: &Bench<'_>, port: u16) -> anyhow::Result<Outcome> {
    let load = H2Load {
        clients: h2load::CLIENTS,
        streams: h2load::STREAMS,
        threads: bench.load.threads.clamp(1, h2load::CLIENTS),
        duration: bench.load.duration,
    };
    Ok(h2load::run(&bench.ctx.tools, port, SMALL_PATH, load)
        .await?
        .map(|summary| Figure::RequestRate {
            per_sec: summary.per_sec,
        }))
}
