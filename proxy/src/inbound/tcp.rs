//! Reverse `tcp`: opaque bytes between the caller and the app.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::capture::{CaptureContext, StreamCapture};
use crate::net::{dial, Target};
use crate::options::RuntimeOptions;
use crate::relay::{proxy_stream, StreamJob};

pub async fn serve<S>(client: S, app: &Target, options: &RuntimeOptions, capture: CaptureContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connect_timeout = options.connect_timeout;
    let record = StreamCapture::begin(&capture, "tcp", app.to_string(), None);
    let upstream = match dial(app, connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // Closing is the only answer a raw TCP caller can be given.
            warn!(error = %e, "closing connection: the app is unreachable");
            capture.count_connect_failure();
            record.refused(e.to_string());
            return;
        }
    };
    let job = StreamJob {
        record,
        context: &capture,
    };
    proxy_stream(client, upstream, job).await;
}
