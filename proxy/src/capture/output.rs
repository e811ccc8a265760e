//! Where the writer thread puts records: the trait every destination implements (the JSON-lines file or
//! stdout, NATS JetStream; a Kafka sink would be one more).
//!
//! The writer thread encodes each record once and hands the same line to every output in turn, so an
//! output never runs on a connection's task and never sees a record twice. An output must not block for
//! long on anything but its own local I/O: a slow output holds up the others and fills the queue behind
//! them (its records are then dropped and counted, never the traffic held).

use std::borrow::Cow;
use std::time::Instant;

use super::record::record_uid;

pub trait RecordOutput: Send {
    /// One record and its encoding: a JSON line ending in `\n`, the same for every output.
    fn write(&mut self, record: &WrittenRecord<'_>, line: &[u8]);

    /// The queue is empty for now: what was written should be on its way (flushed to the file, made
    /// visible to a publisher).
    fn end_batch(&mut self);

    /// Shutdown: deliver what is pending, giving up at `deadline`. Nothing is written after this.
    fn finish(self: Box<Self>, deadline: Instant);
}

/// What an output learns of a record besides its line.
#[derive(Clone, Copy, Debug)]
pub struct WrittenRecord<'a> {
    pub kind: RecordKind,
    pub id: u64,
    /// The record's `uid`; empty when it is this process's uid of `id` (or the record has none).
    pub uid: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Http,
    Stream,
}

impl WrittenRecord<'_> {
    /// What names the record outside its line (the NATS message id): its uid.
    pub fn uid(&self) -> Cow<'_, str> {
        if self.uid.is_empty() {
            Cow::Owned(record_uid(self.id))
        } else {
            Cow::Borrowed(self.uid)
        }
    }
}
