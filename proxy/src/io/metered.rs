//! Counting every byte a client connection carries, into the relayed-bytes metric, as it flows.
//!
//! One atomic add per read or write call (not per byte), on counters looked up once per connection.

use std::task::Context;

use prometheus_client::metrics::counter::Counter;

use crate::budget::admission::ConnectionShare;

use super::observed::{ObservedIo, Observer};
use super::splice::SpliceCounter;

/// The client side of a connection, counted.
pub type MeteredIo<S> = ObservedIo<S, ByteMeter>;

pub struct ByteMeter {
    /// Bytes read from the client: on their way to the target.
    from_client: Counter,
    /// Bytes written to the client: coming back from the target.
    to_client: Counter,
    /// The connection's share of the memory budget, held as long as the socket: it also tells the budget
    /// when the client was last active, and cuts the connection off when it is shed.
    share: Option<ConnectionShare>,
}

impl ByteMeter {
    pub fn new(from_client: Counter, to_client: Counter) -> Self {
        ByteMeter {
            from_client,
            to_client,
            share: None,
        }
    }

    /// The meter of a connection holding `share`.
    pub fn holding(mut self, share: ConnectionShare) -> Self {
        self.share = Some(share);
        self
    }
}

impl Observer for ByteMeter {
    fn read(&mut self, bytes: &[u8]) {
        self.from_client.inc_by(bytes.len() as u64);
        if let Some(share) = &self.share {
            share.read();
        }
    }

    fn written(&mut self, bytes: &[u8]) {
        self.to_client.inc_by(bytes.len() as u64);
        if let Some(share) = &self.share {
            share.written();
        }
    }

    fn poll_cut_off(&mut self, cx: &mut Context<'_>, reading: bool) -> Option<&'static [u8]> {
        self.share.as_ref()?.poll_shed(cx, reading)
    }
}

/// A spliced stream's bytes, counted without being read: forward is from the client.
impl SpliceCounter for ByteMeter {
    fn forward(&mut self, n: usize) {
        self.from_client.inc_by(n as u64);
        if let (Some(share), true) = (&self.share, n > 0) {
            share.read();
        }
    }

    fn backward(&mut self, n: usize) {
        self.to_client.inc_by(n as u64);
        if let (Some(share), true) = (&self.share, n > 0) {
            share.written();
        }
    }
}
