//! The origin every path ends at: nginx serving a 13-byte response and a large (sparse) file, in
//! cleartext (HTTP/1.1, and HTTP/2 with prior knowledge on a port of its own) and over HTTPS (with the run's test certificate, [`crate::tls`]), and an iperf3 server on
//! a port of its own for the bulk tcp relay; and the NATS JetStream server the NATS sink rows publish to.

use std::process::Command;

use anyhow::Context as _;

use super::{nginx, Context};
use crate::clients::tls_handshakes::HttpsTarget;
use crate::probe;
use crate::process::ServerProcess;
use crate::route::Route;
use crate::tls::Trust;

/// The small keep-alive response: 13 bytes, as in the issue.
pub const SMALL_BODY: &[u8] = b"hello, world\n";
pub const SMALL_PATH: &str = "/";
pub const LARGE_PATH: &str = "/large.bin";

/// Where the origin listens (ports chosen before it starts, so the context can carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginEndpoints {
    pub http_port: u16,
    /// The same content over TLS; the server closes each connection after one response.
    pub https_port: u16,
    /// The same content over HTTP/2 cleartext, prior knowledge only (scenario 8).
    pub h2c_port: u16,
    pub iperf_port: u16,
    /// The NATS JetStream server the NATS sink rows publish to (issue #21).
    pub nats_port: u16,
    pub large_file_bytes: u64,
}

/// The origin's ports in the config tests: 8080, 8443, 8082, 5201 and 4222.
#[cfg(test)]
pub const TEST_ENDPOINTS: OriginEndpoints = OriginEndpoints {
    http_port: 8080,
    https_port: 8443,
    h2c_port: 8082,
    iperf_port: 5201,
    nats_port: 4222,
    large_file_bytes: 1,
};

/// Starts nginx, iperf3 and nats-server, each proven ready, and returns them.
pub async fn start(ctx: &Context) -> anyhow::Result<Vec<ServerProcess>> {
    let www = ctx.workdir.subdir("www", 0o755)?;
    let large = www.join(LARGE_PATH.trim_start_matches('/'));
    // Sparse: no disk is written, and nginx's sendfile reads zeros from the page cache.
    std::fs::File::create(&large)
        .and_then(|file| file.set_len(ctx.origin.large_file_bytes))
        .with_context(|| format!("cannot create {}", large.display()))?;
    crate::workdir::set_mode(&large, 0o644)?;

    let (command, log) = nginx::launch_origin(ctx, &www)?;
    let mut nginx = ServerProcess::spawn("nginx (origin)", command, &log)?;
    probe::until_listening(&mut nginx, ctx.origin.http_port, probe::LISTEN_TIMEOUT).await?;
    probe::expect_body(
        &mut nginx,
        Route::Direct,
        ctx.origin.http_port,
        SMALL_PATH,
        SMALL_BODY,
    )
    .await?;
    // One download before any is measured: it proves the file is served whole, and it fills the page
    // cache (a sparse file's pages are zero-filled on first read), which would otherwise slow only
    // the first row measured, the direct one.
    let warm_up = crate::clients::curl::download(
        &ctx.tools,
        Route::Direct,
        crate::clients::curl::Scheme::Http,
        ctx.origin.http_port,
        LARGE_PATH,
        ctx.origin.large_file_bytes,
        std::time::Duration::ZERO,
    );
    if let Err(invalid) = warm_up.await? {
        return Err(nginx
            .failed(format!("failed the download of {LARGE_PATH}: {invalid}"))
            .into());
    }
    probe::until_listening(&mut nginx, ctx.origin.h2c_port, probe::LISTEN_TIMEOUT).await?;
    let h2c_port = ctx.origin.h2c_port;
    probe::expect_h2c_body(&mut nginx, &ctx.tools, h2c_port, SMALL_PATH, SMALL_BODY).await?;
    probe::until_listening(&mut nginx, ctx.origin.https_port, probe::LISTEN_TIMEOUT).await?;
    let https = https_target(ctx, Route::Direct, Trust::Origin);
    probe::expect_https_body(&mut nginx, &https).await?;

    let log = ctx.workdir.file("iperf3-server.log");
    let mut command = Command::new(&ctx.tools.iperf3);
    command
        // --forceflush: its banner must reach the log file now, not when a buffer fills.
        .args(["--server", "--forceflush", "--bind", "127.0.0.1", "--port"])
        .arg(ctx.origin.iperf_port.to_string());
    let mut iperf3 = ServerProcess::spawn("iperf3 (origin)", command, &log)?;
    // A bare connection would count as a failed test on iperf3's control port: wait for its banner.
    probe::until_logged(&mut iperf3, &log, "Server listening", probe::LISTEN_TIMEOUT).await?;
    crate::clients::iperf3::verify(&ctx.tools, ctx.origin.iperf_port)
        .await
        .map_err(|error| iperf3.failed(format!("ran no test: {error:#}")))?;
    // Where captures end for the NATS sink rows.
    let nats = super::nats::start(ctx).await?;
    Ok(vec![nginx, iperf3, nats])
}

/// A GET of the small response from the origin's HTTPS server through `route`, by a client trusting
/// only the CA `trust` names.
pub fn https_target(ctx: &Context, route: Route, trust: Trust) -> HttpsTarget {
    HttpsTarget {
        route,
        origin_port: ctx.origin.https_port,
        server_name: crate::tls::server_name(),
        config: ctx.tls.client_config(trust),
        path: SMALL_PATH,
        expected_body: SMALL_BODY,
    }
}
