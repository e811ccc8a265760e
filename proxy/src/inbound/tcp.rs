//! Reverse `tcp`: opaque bytes between the caller and the app.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::capture::{CaptureContext, StreamCapture};
use crate::net::{dial, Target};
use crate::relay::relay;

pub async fn serve<S>(client: S, app: &Target, connect_timeout: Duration, capture: CaptureContext)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let record = StreamCapture::begin(&capture, "tcp", app.to_string(), None);
    let mut upstream = match dial(app, connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // Closing is the only answer a raw TCP caller can be given.
            warn!(error = %e, "closing connection: the app is unreachable");
            capture.count_connect_failure();
            record.refused(e.to_string());
            return;
        }
    };
    let mut client = record.tap(client);
    let end = relay(&mut client, &mut upstream).await;
    record.finish(client, end);
}
