//! The opaque byte relay under tcp proxying, SOCKS streams and CONNECT tunnels.
//!
//! tokio's `copy_bidirectional` is the whole data path: fixed buffers, no per-byte work, and a half-close
//! on one side (EOF) is passed on as a write shutdown to the other while the reverse direction keeps flowing.

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::capture::StreamEnd;

/// Relays until both directions are finished, and says how the stream ended.
pub async fn relay<C, U>(client: &mut C, upstream: &mut U) -> StreamEnd
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    match tokio::io::copy_bidirectional(client, upstream).await {
        Ok((sent, received)) => {
            debug!(sent, received, "stream closed");
            StreamEnd::Closed
        }
        Err(e) => {
            // A reset from either peer ends the stream; the other side is closed when both are dropped.
            debug!(error = %e, "stream ended with an error");
            StreamEnd::Reset(e.to_string())
        }
    }
}
