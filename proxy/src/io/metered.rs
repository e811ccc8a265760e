//! Counting every byte a client connection carries, into the relayed-bytes metric, as it flows.
//!
//! One atomic add per read or write call (not per byte), on counters looked up once per connection.

use prometheus_client::metrics::counter::Counter;

use super::observed::{ObservedIo, Observer};
use super::splice::SpliceCounter;

/// The client side of a connection, counted.
pub type MeteredIo<S> = ObservedIo<S, ByteMeter>;

pub struct ByteMeter {
    /// Bytes read from the client: on their way to the target.
    from_client: Counter,
    /// Bytes written to the client: coming back from the target.
    to_client: Counter,
}

impl ByteMeter {
    pub fn new(from_client: Counter, to_client: Counter) -> Self {
        ByteMeter {
            from_client,
            to_client,
        }
    }
}

impl Observer for ByteMeter {
    fn read(&mut self, bytes: &[u8]) {
        self.from_client.inc_by(bytes.len() as u64);
    }

    fn written(&mut self, bytes: &[u8]) {
        self.to_client.inc_by(bytes.len() as u64);
    }
}

/// A spliced stream's bytes, counted without being read: forward is from the client.
impl SpliceCounter for ByteMeter {
    fn forward(&mut self, n: usize) {
        self.from_client.inc_by(n as u64);
    }

    fn backward(&mut self, n: usize) {
        self.to_client.inc_by(n as u64);
    }
}
