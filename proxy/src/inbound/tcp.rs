//! Reverse `tcp`: opaque bytes between the caller and the app.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use crate::capture::Route;
use crate::connection::Connection;
use crate::net::{dial, Target};
use crate::options::RuntimeOptions;
use crate::relay::{proxy_stream, StreamJob};

pub async fn serve<S>(client: S, app: &Target, options: &RuntimeOptions, connection: Connection)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connect_timeout = options.connect_timeout;
    let route = Arc::new(Route::new("tcp", app.to_string(), None));
    let record = connection.record_stream(&route);
    let upstream = match dial(app, connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // Closing is the only answer a raw TCP caller can be given.
            warn!(error = %e, "closing connection: the app is unreachable");
            connection.count_connect_failure();
            if let Some(record) = record {
                record.refused(e.to_string());
            }
            return;
        }
    };
    let job = StreamJob {
        route,
        record,
        context: &connection,
    };
    proxy_stream(client, upstream, job).await;
}
