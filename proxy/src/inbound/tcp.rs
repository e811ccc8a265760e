//! Reverse `tcp`: opaque bytes between the caller and the app.

use std::time::Duration;

use tokio::net::TcpStream;
use tracing::warn;

use crate::net::{dial, Target};
use crate::relay::relay;

pub async fn serve(mut client: TcpStream, app: &Target, connect_timeout: Duration) {
    let mut upstream = match dial(app, connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // Closing is the only answer a raw TCP caller can be given.
            warn!(error = %e, "closing connection: the app is unreachable");
            return;
        }
    };
    relay(&mut client, &mut upstream).await;
}
