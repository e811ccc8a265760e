//! Where the writer thread puts records: the trait every destination implements (the JSON-lines file or
//! stdout, NATS JetStream; a Kafka sink would be one more).
//!
//! The writer thread encodes each record once and hands the same line to every output in turn, so an
//! output never runs on a connection's task and never sees a record twice. An output must not block for
//! long on anything but its own local I/O: a slow output holds up the others and fills the queue behind
//! them (its records are then dropped and counted, never the traffic held).

use std::time::Instant;

use super::record::Record;

pub trait RecordOutput: Send {
    /// One record and its encoding: a JSON line ending in `\n`, the same for every output.
    fn write(&mut self, record: &Record, line: &[u8]);

    /// The queue is empty for now: what was written should be on its way (flushed to the file, made
    /// visible to a publisher).
    fn end_batch(&mut self);

    /// Shutdown: deliver what is pending, giving up at `deadline`. Nothing is written after this.
    fn finish(self: Box<Self>, deadline: Instant);
}
