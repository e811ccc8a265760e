//! The spool: every record bound for NATS is appended here first, by the capture writer thread, and the
//! publisher sends it from here; a record leaves the spool once JetStream has acknowledged it. So a record
//! not yet acknowledged is always on disk, whether NATS is slow, down for an hour, or the sidecar is
//! restarted in between, and records are sent (and sent again) in the order they were written.
//!
//! The spool is a directory of numbered segment files, each a run of frames ([`frame`]): a frame is one
//! NATS message, a run of records (the JSON lines of one round of the writer, up to a byte and a record
//! cap) under the uid of its first record. Messages are cut here, when records are spooled, not when they
//! are published: a message sent again (after an outage, or by the next process) is the same bytes under
//! the same id, so JetStream's de-duplication still drops the copy. The writer appends to the newest
//! segment and starts a new one past a size; the publisher reads from the oldest and deletes a segment
//! once every frame in it is acknowledged. The budget bounds the bytes of all segments together: a record
//! that would pass it is dropped (counted by the caller), and traffic never waits. At shutdown the
//! publisher writes how far it got to `position` (always a frame's end), so the next start re-sends
//! nothing that was acknowledged.
//!
//! Frames are gathered in a batch of the writer's own and written whole, like the capture file's lines
//! (`jsonl_file`): a batch that fails part-way (a full disk) is cut back off the segment, so no half frame
//! is ever left for the next one to be appended to (which would send records under another's id, or
//! not at all), and the publisher never reads past the end of the last batch written whole. A frame's
//! records are spooled exactly when all its bytes are in the segment; those of a failed batch are dropped,
//! and only they. Counts (spooled, dropped, pending) are of records, not frames.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::frame::{self, Parsed};
use crate::capture::jsonl_file::CAPTURE_FILE_MODE;

const SEGMENT_SUFFIX: &str = ".spool";
const POSITION_FILE: &str = "position";
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes of whole frames gathered before they are written even if the writer's round is not over (the
/// message being gathered stays open: ending it there would make a message of a record or two after each
/// one the byte cap ended).
const BATCH: usize = 32 * 1024;
/// A message's payload holds at most this many bytes of records (unless one record alone is larger: it
/// is a message of its own), or fewer if the server's `max_payload` is lower. Large enough that the
/// per-message costs (nats-server's parse, duplicate check, store and acknowledgement; the publisher's
/// send and wait) are spread over tens of records; small enough to stay far below any usual `max_payload`
/// (1 MB by default) and to keep a re-send after a lost acknowledgement cheap.
pub(crate) const MESSAGE_BYTES: usize = 64 * 1024;
/// A message holds at most this many records unless `--capture-sink-records-per-message` says fewer.
pub const MESSAGE_RECORDS: u64 = 1024;
/// A frame header's bytes besides the id, at most: two spaces, two numbers, a line feed.
const HEADER_NUMBERS: usize = 2 * 20 + 3;

/// What the writer and the publisher share.
pub(crate) struct SpoolShared {
    /// Bytes of every segment file.
    bytes: AtomicU64,
    /// Records in the spool not yet acknowledged.
    pending: AtomicU64,
    /// The byte cap on a message's payload: [`MESSAGE_BYTES`], or less once the publisher has learnt the
    /// server's `max_payload`.
    message_bytes: AtomicUsize,
    /// The segment the writer appends to; those before it are complete.
    writer_segment: AtomicU64,
    /// How much of the writer's segment is whole frames (the end of its last batch written whole): the
    /// reader reads no further there. Set to 0 before `writer_segment` moves on.
    writer_committed: AtomicU64,
    /// The writer stopped: its segment is complete too.
    writer_closed: AtomicBool,
    /// Where the writer's last frame ended, once it closed (segment, offset): everything is delivered
    /// when the acknowledgements reach it.
    closed_end: (AtomicU64, AtomicU64),
    /// Woken when the writer made new frames visible.
    pub(crate) data: tokio::sync::Notify,
}

impl SpoolShared {
    pub(crate) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// A message of `records` records left the spool (acknowledged, or dropped as too large).
    pub(crate) fn acknowledged(&self, records: u64) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(records))
            });
    }

    /// Messages cut from now on fit a server that accepts messages of at most `max_payload` bytes
    /// (headers included: room is left for them). Messages already spooled keep their size.
    pub(crate) fn limit_message_bytes(&self, max_payload: usize) {
        const HEADERS: usize = 1024;
        let cap = MESSAGE_BYTES
            .min(max_payload.saturating_sub(HEADERS))
            .max(1);
        self.message_bytes.store(cap, Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn writer_closed(&self) -> bool {
        self.writer_closed.load(Ordering::Acquire)
    }

    /// Where the writer's last frame ended, once it has closed.
    pub(crate) fn closed_end(&self) -> Option<Position> {
        self.writer_closed().then(|| Position {
            segment: self.closed_end.0.load(Ordering::Relaxed),
            offset: self.closed_end.1.load(Ordering::Relaxed),
        })
    }
}

/// A place in the spool: a byte offset in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

/// One message as the publisher sends it.
pub(crate) struct Frame {
    /// The uid of its first record.
    pub(crate) id: String,
    /// How many records it carries.
    pub(crate) records: u64,
    /// The records' JSON lines, each ending in a line feed.
    pub(crate) payload: Bytes,
    /// Where the next frame starts.
    pub(crate) end: Position,
}

pub(crate) enum Appended {
    /// In the batch; it is spooled or dropped when the batch is written ([`SpoolWriter::flush`]).
    Batched,
    /// The spool holds its budget: the record is not kept.
    OverBudget,
}

/// What became of a batch's records.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    /// Records now whole in the spool.
    pub(crate) spooled: u64,
    /// Records of a batch that could not be written whole: not in the spool.
    pub(crate) dropped: u64,
    pub(crate) error: Option<io::Error>,
}

pub(crate) struct SpoolWriter {
    dir: PathBuf,
    segment: u64,
    file: File,
    /// Whole frames not yet written, and how many records they hold.
    batch: Vec<u8>,
    batch_records: u64,
    /// The message being gathered: its id (its first record's), its records' lines, and how many. It
    /// becomes a frame of the batch when the next record would pass a cap, or at the end of the round.
    message_id: String,
    message: Vec<u8>,
    message_records: u64,
    /// The most records a message may hold (1: one message per record, its id the record's uid).
    records_per_message: u64,
    /// The segment's length after the last batch written whole: always at the end of a frame.
    committed: u64,
    /// A failed batch could not be cut back off the segment: the next batch starts a new segment.
    torn: bool,
    segment_size: u64,
    budget: u64,
    shared: Arc<SpoolShared>,
}

pub(crate) struct SpoolReader {
    dir: PathBuf,
    shared: Arc<SpoolShared>,
    segment: u64,
    file: Option<File>,
    /// Bytes read from the segment; those from `start` on are not yet made into frames and begin at
    /// `offset` in the segment.
    buffer: Vec<u8>,
    start: usize,
    offset: u64,
    /// The oldest segment that may still exist.
    oldest: u64,
}

/// Opens (creating it if needed) the spool directory: the writer starts a new segment after any left by a
/// previous run, and the reader starts where that run's acknowledgements ended. Messages the writer cuts
/// hold at most `records_per_message` records (at least 1, at most [`MESSAGE_RECORDS`]).
pub(crate) fn open(
    dir: &Path,
    budget: u64,
    records_per_message: u64,
) -> io::Result<(SpoolWriter, SpoolReader)> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut segments = Vec::new();
    let mut bytes = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|name| name.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|number| number.parse::<u64>().ok())
        else {
            continue;
        };
        bytes += entry.metadata()?.len();
        segments.push(number);
    }
    segments.sort_unstable();
    let saved = read_position(dir);
    // Segment numbers never go back below a saved position: a position left by an earlier run must not
    // point into a new segment of the same number (it would skip that segment's first records).
    let newest = segments
        .last()
        .copied()
        .unwrap_or(0)
        .max(saved.map_or(0, |at| at.segment));
    let oldest = segments.first().copied().unwrap_or(newest + 1);
    let start = saved
        .filter(|at| segments.contains(&at.segment))
        .unwrap_or(Position {
            segment: oldest,
            offset: 0,
        });
    let pending = count_records_from(dir, &segments, start)?;
    let shared = Arc::new(SpoolShared {
        bytes: AtomicU64::new(bytes),
        pending: AtomicU64::new(pending),
        message_bytes: AtomicUsize::new(MESSAGE_BYTES),
        writer_segment: AtomicU64::new(newest + 1),
        writer_committed: AtomicU64::new(0),
        writer_closed: AtomicBool::new(false),
        closed_end: (AtomicU64::new(0), AtomicU64::new(0)),
        data: tokio::sync::Notify::new(),
    });
    let segment = newest + 1;
    let file = create_segment(&segment_path(dir, segment))?;
    let writer = SpoolWriter {
        dir: dir.to_owned(),
        segment,
        file,
        batch: Vec::with_capacity(BATCH + 2 * MESSAGE_BYTES),
        batch_records: 0,
        message_id: String::new(),
        message: Vec::with_capacity(MESSAGE_BYTES),
        message_records: 0,
        records_per_message: records_per_message.clamp(1, MESSAGE_RECORDS),
        committed: 0,
        torn: false,
        segment_size: (budget / 16).clamp(4 * 1024, 8 * 1024 * 1024),
        budget,
        shared: shared.clone(),
    };
    let reader = SpoolReader {
        dir: dir.to_owned(),
        shared,
        segment: start.segment,
        file: None,
        buffer: Vec::new(),
        start: 0,
        offset: start.offset,
        oldest: oldest.min(start.segment),
    };
    Ok((writer, reader))
}

impl SpoolWriter {
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<SpoolShared> {
        &self.shared
    }

    /// Adds one record (`id` its uid, `line` its JSON line) to the message being gathered, or to a new
    /// one if it would pass a cap; the publisher sees it once [`SpoolWriter::flush`] has written it.
    pub(crate) fn append(&mut self, id: &str, line: &[u8]) -> Appended {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let size = line.len() + 1;
        let starts_message = self.message_records == 0
            || self.message_records >= self.records_per_message
            || self.message.len() + size > self.shared.message_bytes.load(Ordering::Relaxed);
        if starts_message {
            self.seal();
        }
        // The open message's header is counted at its largest, so the spool never passes the budget.
        let header = id.len() + HEADER_NUMBERS;
        let after = self.shared.bytes.load(Ordering::Relaxed)
            + (self.batch.len() + header + self.message.len() + size) as u64;
        if after > self.budget {
            return Appended::OverBudget;
        }
        if starts_message {
            // The id ends at the first space and the header at the line feed: neither may be inside it.
            self.message_id.clear();
            self.message_id.extend(id.chars().map(
                |c| {
                    if c.is_ascii_whitespace() {
                        '_'
                    } else {
                        c
                    }
                },
            ));
        }
        self.message.extend_from_slice(line);
        self.message.push(b'\n');
        self.message_records += 1;
        Appended::Batched
    }

    /// The message being gathered becomes a frame of the batch: its boundaries are fixed from now on.
    fn seal(&mut self) {
        if self.message_records == 0 {
            return;
        }
        frame::push_header(
            &mut self.batch,
            &self.message_id,
            self.message_records,
            self.message.len(),
        );
        self.batch.extend_from_slice(&self.message);
        self.batch_records += std::mem::take(&mut self.message_records);
        self.message.clear();
    }

    /// Whether the batch's whole frames should be written now ([`SpoolWriter::write_frames`]) rather than
    /// at the end of the writer's round: they are many bytes, or they fill the segment.
    pub(crate) fn wants_flush(&self) -> bool {
        self.batch.len() >= BATCH || self.committed + self.batch.len() as u64 >= self.segment_size
    }

    /// The writer's round is over: ends the message being gathered and writes the batch.
    pub(crate) fn flush(&mut self) -> Flushed {
        self.seal();
        self.write_frames()
    }

    /// Writes the batch's whole frames, all or none (a failure part-way is cut back off the segment), and
    /// makes what was written visible to the publisher. The message being gathered stays open.
    pub(crate) fn write_frames(&mut self) -> Flushed {
        let records = std::mem::take(&mut self.batch_records);
        if self.batch.is_empty() {
            return Flushed::default();
        }
        let written = self.write_batch();
        self.batch.clear();
        let flushed = match written {
            Ok(length) => {
                self.committed += length;
                self.shared.bytes.fetch_add(length, Ordering::Relaxed);
                self.shared.pending.fetch_add(records, Ordering::Relaxed);
                self.shared
                    .writer_committed
                    .store(self.committed, Ordering::Release);
                Flushed {
                    spooled: records,
                    ..Flushed::default()
                }
            }
            Err(error) => Flushed {
                dropped: records,
                error: Some(error),
                ..Flushed::default()
            },
        };
        self.shared.data.notify_one();
        if flushed.error.is_none() && self.committed >= self.segment_size {
            // A failure here only means the segment grows on; the next batch tries again.
            let _ = self.next_segment();
        }
        flushed
    }

    fn write_batch(&mut self) -> io::Result<u64> {
        if self.torn {
            // Half a frame is still at the segment's end: leave it there, in a segment the reader treats
            // as finished (it drops a trailing partial frame), and go on in a new one.
            self.next_segment()?;
        }
        if let Err(e) = self.file.write_all(&self.batch) {
            self.torn = self.cut_back().is_err();
            return Err(e);
        }
        Ok(self.batch.len() as u64)
    }

    /// Cuts the segment back to its last whole frame.
    fn cut_back(&mut self) -> io::Result<()> {
        self.file.set_len(self.committed)?;
        self.file.seek(SeekFrom::Start(self.committed))?;
        Ok(())
    }

    /// The last flush: every segment is complete from now on.
    pub(crate) fn close(mut self) -> Flushed {
        let flushed = self.flush();
        self.shared
            .closed_end
            .0
            .store(self.segment, Ordering::Relaxed);
        self.shared
            .closed_end
            .1
            .store(self.committed, Ordering::Relaxed);
        self.shared.writer_closed.store(true, Ordering::Release);
        self.shared.data.notify_one();
        flushed
    }

    fn next_segment(&mut self) -> io::Result<()> {
        let next = self.segment + 1;
        let file = create_segment(&segment_path(&self.dir, next))?;
        self.file = file;
        self.segment = next;
        self.committed = 0;
        self.torn = false;
        // The old segment is complete before the reader may learn that it is, and the reader never
        // applies the old segment's length to the new one.
        self.shared.writer_committed.store(0, Ordering::Release);
        self.shared.writer_segment.store(next, Ordering::Release);
        Ok(())
    }
}

impl SpoolReader {
    pub(crate) fn shared(&self) -> &Arc<SpoolShared> {
        &self.shared
    }

    /// Where the next frame read starts.
    pub(crate) fn position(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// The next frame, or `None` when every frame written so far has been read.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.take_buffered() {
                return Ok(Some(frame));
            }
            // The writer's segment number is read before the file, so "finished" is never concluded from
            // a read that raced the writer's last bytes.
            let writer_segment = self.shared.writer_segment.load(Ordering::Acquire);
            if self.segment >= writer_segment {
                // The writer's own segment: more may come, and only whole batches are read.
                let committed = self.shared.writer_committed.load(Ordering::Acquire);
                if self.read_more(Some(committed))? == 0 {
                    return Ok(None);
                }
                continue;
            }
            if self.read_more(None)? == 0 {
                // A finished segment read to its end; a partial line there (a crash mid-write) is lost.
                self.segment += 1;
                self.offset = 0;
                self.file = None;
                self.buffer.clear();
                self.start = 0;
            }
        }
    }

    /// Reads from `at` again (frames sent but not acknowledged when the connection failed).
    pub(crate) fn rewind(&mut self, at: Position) {
        self.segment = at.segment;
        self.offset = at.offset;
        self.file = None;
        self.buffer.clear();
        self.start = 0;
    }

    /// Every frame before `acknowledged` is acknowledged: deletes the segments entirely before it, or all of
    /// them when `everything` (the writer closed and the last frame is acknowledged).
    pub(crate) fn release(&mut self, acknowledged: Position, everything: bool) {
        let end = if everything {
            self.shared.writer_segment.load(Ordering::Acquire) + 1
        } else {
            acknowledged.segment
        };
        while self.oldest < end {
            let path = segment_path(&self.dir, self.oldest);
            if let Ok(meta) = fs::metadata(&path) {
                if fs::remove_file(&path).is_ok() {
                    let _ =
                        self.shared
                            .bytes
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                Some(n.saturating_sub(meta.len()))
                            });
                }
            }
            self.oldest += 1;
        }
        if everything {
            // Nothing is left to resume: a position kept now would only mislead the next start.
            let _ = fs::remove_file(self.dir.join(POSITION_FILE));
        }
    }

    /// Remembers, for the next start, that everything before `acknowledged` was acknowledged.
    pub(crate) fn save_position(&self, acknowledged: Position) -> io::Result<()> {
        let path = self.dir.join(POSITION_FILE);
        let temporary = self.dir.join(format!("{POSITION_FILE}.new"));
        let _ = fs::remove_file(&temporary);
        let mut file = create_segment(&temporary)?;
        writeln!(file, "{} {}", acknowledged.segment, acknowledged.offset)?;
        fs::rename(&temporary, &path)
    }

    fn take_buffered(&mut self) -> Option<Frame> {
        loop {
            let (frame, size) = match frame::parse(&self.buffer[self.start..]) {
                Parsed::Incomplete => return None,
                Parsed::Message {
                    id,
                    records,
                    payload,
                    size,
                } => (
                    Some((
                        String::from_utf8_lossy(id).into_owned(),
                        records,
                        Bytes::copy_from_slice(payload),
                    )),
                    size,
                ),
                // Not a frame (the writer never makes one; a damaged file might): skipped. It held no
                // record that was counted as pending (counting parses the same way).
                Parsed::Junk { size } => (None, size),
            };
            self.start += size;
            self.offset += size as u64;
            if let Some((id, records, payload)) = frame {
                return Some(Frame {
                    id,
                    records,
                    payload,
                    end: Position {
                        segment: self.segment,
                        offset: self.offset,
                    },
                });
            }
        }
    }

    /// Reads the next chunk of the current segment into the buffer, no further than `limit` (an offset in
    /// the segment) if given; 0 at its end (or if it is gone).
    fn read_more(&mut self, limit: Option<u64>) -> io::Result<usize> {
        if self.file.is_none() {
            match File::open(segment_path(&self.dir, self.segment)) {
                Ok(mut file) => {
                    let unframed = (self.buffer.len() - self.start) as u64;
                    file.seek(SeekFrom::Start(self.offset + unframed))?;
                    self.file = Some(file);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(0);
        };
        // What was made into frames goes; a partial line moves to the front.
        self.buffer.drain(..self.start);
        self.start = 0;
        let start = self.buffer.len();
        let chunk = match limit {
            Some(limit) => {
                let at = self.offset + start as u64;
                READ_CHUNK.min(usize::try_from(limit.saturating_sub(at)).unwrap_or(READ_CHUNK))
            }
            None => READ_CHUNK,
        };
        if chunk == 0 {
            return Ok(0);
        }
        self.buffer.resize(start + chunk, 0);
        let read = file.read(&mut self.buffer[start..]);
        self.buffer.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}{SEGMENT_SUFFIX}"))
}

/// A new file only the sidecar's user can read (records hold headers and bodies), never through a link.
fn create_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(CAPTURE_FILE_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

fn read_position(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(POSITION_FILE)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

/// Records left by a previous run from `start` on: the publisher's backlog, for the lag metric. Counted
/// as the reader will read them: whole frames only.
fn count_records_from(dir: &Path, segments: &[u64], start: Position) -> io::Result<u64> {
    let mut records = 0;
    for &segment in segments.iter().filter(|&&s| s >= start.segment) {
        let bytes = fs::read(segment_path(dir, segment))?;
        let mut at = if segment == start.segment {
            usize::try_from(start.offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len())
        } else {
            0
        };
        loop {
            match frame::parse(&bytes[at..]) {
                Parsed::Message {
                    records: n, size, ..
                } => {
                    records += n;
                    at += size;
                }
                Parsed::Junk { size } => at += size,
                Parsed::Incomplete => break,
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Every message left to read: its id and its records' ids (each record's line is `{"n":"ID"}`).
    fn messages(reader: &mut SpoolReader) -> Vec<(String, Vec<String>)> {
        let mut messages = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            let text = std::str::from_utf8(&frame.payload).unwrap();
            assert!(text.ends_with('\n'), "{text:?}");
            let ids: Vec<String> = text
                .lines()
                .map(|line| {
                    line.strip_prefix("{\"n\":\"")
                        .and_then(|rest| rest.strip_suffix("\"}"))
                        .unwrap_or_else(|| panic!("{line:?}"))
                        .to_owned()
                })
                .collect();
            assert_eq!(ids.len() as u64, frame.records);
            assert_eq!(frame.id, ids[0], "a message's id is its first record's");
            messages.push((frame.id, ids));
        }
        messages
    }

    /// Every record left to read, in order.
    fn drain(reader: &mut SpoolReader) -> Vec<String> {
        messages(reader)
            .into_iter()
            .flat_map(|(_, ids)| ids)
            .collect()
    }

    fn append(writer: &mut SpoolWriter, id: &str) -> bool {
        matches!(
            writer.append(id, format!("{{\"n\":\"{id}\"}}\n").as_bytes()),
            Appended::Batched
        )
    }

    #[test]
    fn frames_come_back_in_order_across_segments_and_restarts() {
        let dir = scratch("order");
        let (mut writer, mut reader) = open(&dir, 64 * 1024, MESSAGE_RECORDS).unwrap();
        let ids: Vec<String> = (0..500).map(|n| format!("id{n}")).collect();
        for id in &ids[..300] {
            assert!(append(&mut writer, id));
        }
        assert_eq!(writer.flush().dropped, 0);
        let first = drain(&mut reader);
        assert_eq!(first, ids[..300]);
        // Half acknowledged, then the process stops.
        let acknowledged = Position {
            segment: reader.segment,
            offset: reader.offset,
        };
        for id in &ids[300..] {
            assert!(append(&mut writer, id));
        }
        assert!(writer.close().error.is_none());
        reader.release(acknowledged, false);
        reader.save_position(acknowledged).unwrap();
        drop(reader);
        let (writer, mut reader) = open(&dir, 64 * 1024, MESSAGE_RECORDS).unwrap();
        assert_eq!(reader.shared().pending(), 200);
        assert!(writer.close().error.is_none());
        assert_eq!(drain(&mut reader), ids[300..]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_budget_bounds_the_spool_and_released_segments_make_room() {
        let dir = scratch("budget");
        let (mut writer, mut reader) = open(&dir, 8 * 1024, MESSAGE_RECORDS).unwrap();
        let mut spooled = 0;
        while append(&mut writer, &format!("record-{spooled:06}")) {
            spooled += 1;
        }
        assert!(spooled > 100, "{spooled}");
        assert_eq!(writer.flush().spooled, spooled as u64);
        assert!(writer.shared().bytes() <= 8 * 1024);
        assert_eq!(drain(&mut reader).len(), spooled);
        reader.release(reader.position(), false);
        assert!(append(&mut writer, "after"), "room again once acknowledged");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_round_is_one_message_split_at_the_byte_and_record_caps() {
        let dir = scratch("caps");
        let (mut writer, mut reader) = open(&dir, 64 * 1024 * 1024, MESSAGE_RECORDS).unwrap();
        // One round of 10 small records: one message.
        for n in 0..10 {
            assert!(append(&mut writer, &format!("a{n}")));
        }
        writer.flush();
        let round = messages(&mut reader);
        assert_eq!(round.len(), 1, "{round:?}");
        assert_eq!(round[0].1.len(), 10);
        // A round past the record cap: messages of at most the cap.
        let many = MESSAGE_RECORDS as usize * 2 + 5;
        for n in 0..many {
            assert!(append(&mut writer, &format!("b{n}")));
        }
        writer.flush();
        let split = messages(&mut reader);
        let sizes: Vec<usize> = split.iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), many);
        assert!(
            sizes.iter().all(|&n| n as u64 <= MESSAGE_RECORDS) && sizes.len() >= 3,
            "{sizes:?}"
        );
        // Records of 10 KB: at most 64 KiB of them to a message; one larger than the cap goes alone.
        let pad = "x".repeat(10_000);
        for n in 0..20 {
            let line = format!("{{\"n\":\"c{n}\"}}\n");
            assert!(matches!(
                writer.append(
                    &format!("c{n}"),
                    line.replace("\"}", &format!("\",\"p\":\"{pad}\"}}"))
                        .as_bytes()
                ),
                Appended::Batched
            ));
        }
        let huge = format!("{{\"n\":\"d\",\"p\":\"{}\"}}\n", "y".repeat(100_000));
        assert!(matches!(
            writer.append("d", huge.as_bytes()),
            Appended::Batched
        ));
        assert!(append(&mut writer, "e"));
        writer.flush();
        let mut sizes = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            assert!(
                frame.payload.len() <= MESSAGE_BYTES || frame.records == 1,
                "{} records in {} bytes",
                frame.records,
                frame.payload.len()
            );
            sizes.push((frame.id, frame.records));
        }
        assert_eq!(
            sizes,
            [
                ("c0".into(), 6),
                ("c6".into(), 6),
                ("c12".into(), 6),
                ("c18".into(), 2),
                ("d".into(), 1),
                ("e".into(), 1)
            ]
        );
        // A server with a smaller max_payload: messages cut from then on fit it.
        writer.shared().limit_message_bytes(1024 + 25_000);
        for n in 0..6 {
            let line = format!("{{\"n\":\"f{n}\",\"p\":\"{pad}\"}}\n");
            assert!(matches!(
                writer.append(&format!("f{n}"), line.as_bytes()),
                Appended::Batched
            ));
        }
        writer.flush();
        let mut sizes = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            sizes.push(frame.records);
        }
        assert_eq!(sizes, [2, 2, 2]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn with_one_record_per_message_each_message_is_one_record_under_its_uid() {
        let dir = scratch("one-per-message");
        let (mut writer, mut reader) = open(&dir, 64 * 1024 * 1024, 1).unwrap();
        for n in 0..25 {
            assert!(append(&mut writer, &format!("r{n}")));
        }
        writer.flush();
        let written = messages(&mut reader);
        let expected: Vec<(String, Vec<String>)> = (0..25)
            .map(|n| (format!("r{n}"), vec![format!("r{n}")]))
            .collect();
        assert_eq!(written, expected);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_long_round_written_as_the_output_writes_it_is_messages_filled_to_the_cap() {
        let dir = scratch("long-round");
        let (mut writer, mut reader) = open(&dir, 64 * 1024 * 1024, MESSAGE_RECORDS).unwrap();
        let pad = "x".repeat(700);
        let mut flushes = 0;
        for n in 0..2000 {
            let line = format!("{{\"n\":\"g{n}\",\"p\":\"{pad}\"}}\n");
            assert!(matches!(
                writer.append(&format!("g{n}"), line.as_bytes()),
                Appended::Batched
            ));
            // What NatsOutput::write does after each record.
            if writer.wants_flush() {
                assert_eq!(writer.write_frames().dropped, 0);
                flushes += 1;
            }
        }
        writer.flush();
        assert!(flushes > 10, "written as the round goes: {flushes}");
        let mut sizes = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            sizes.push((frame.records, frame.payload.len()));
        }
        let (last, full) = sizes.split_last().unwrap();
        assert!(last.0 >= 1);
        for &(records, bytes) in full {
            assert!(
                bytes > MESSAGE_BYTES - 800 && bytes <= MESSAGE_BYTES,
                "a message of {records} records, {bytes} bytes, cut before the cap: {sizes:?}"
            );
        }
        assert_eq!(sizes.iter().map(|&(n, _)| n).sum::<u64>(), 2000);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_reads_the_same_messages_under_the_same_ids() {
        let dir = scratch("same");
        let (mut writer, mut reader) = open(&dir, 64 * 1024 * 1024, MESSAGE_RECORDS).unwrap();
        for round in 0..3 {
            for n in 0..50 {
                assert!(append(&mut writer, &format!("r{round}-{n}")));
            }
            writer.flush();
        }
        let mut first = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            first.push((frame.id, frame.records, frame.payload));
        }
        assert_eq!(first.len(), 3);
        // Nothing acknowledged; the next process reads the spool from its start.
        assert!(writer.close().error.is_none());
        drop(reader);
        let (writer, mut reader) = open(&dir, 64 * 1024 * 1024, MESSAGE_RECORDS).unwrap();
        assert_eq!(reader.shared().pending(), 150);
        assert!(writer.close().error.is_none());
        let mut again = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            again.push((frame.id, frame.records, frame.payload));
        }
        assert!(again == first, "re-read messages differ");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_older_versions_spool_is_sent_as_messages_of_one_record() {
        let dir = scratch("older");
        fs::create_dir_all(&dir).unwrap();
        // Frames `ID SP JSON LF`, as sidecars before multi-record messages wrote them, and a position
        // after the first of them.
        let old: String = (0..5)
            .map(|n| format!("o{n} {{\"n\":\"o{n}\"}}\n"))
            .collect();
        fs::write(segment_path(&dir, 7), &old).unwrap();
        let first = "o0 {\"n\":\"o0\"}\n".len();
        fs::write(dir.join(POSITION_FILE), format!("7 {first}\n")).unwrap();
        let (mut writer, mut reader) = open(&dir, 64 * 1024 * 1024, MESSAGE_RECORDS).unwrap();
        assert_eq!(reader.shared().pending(), 4);
        assert!(append(&mut writer, "new0"));
        assert!(append(&mut writer, "new1"));
        assert!(writer.close().error.is_none());
        let read = messages(&mut reader);
        let expected: Vec<(String, Vec<String>)> = (1..5)
            .map(|n| (format!("o{n}"), vec![format!("o{n}")]))
            .chain([("new0".into(), vec!["new0".into(), "new1".into()])])
            .collect();
        assert_eq!(read, expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
