//! The spool: every record bound for NATS is appended here first, by the capture writer thread, and the
//! publisher sends it from here; a record leaves the spool once JetStream has acknowledged it. So a record
//! not yet acknowledged is always on disk, whether NATS is slow, down for an hour, or the sidecar is
//! restarted in between, and records are sent (and sent again) in the order they were written.
//!
//! The spool is a directory of numbered segment files, each a run of frames `ID SP JSON LF` (the message
//! id, then the record's JSON line). The writer appends to the newest segment and starts a new one past a
//! size; the publisher reads from the oldest and deletes a segment once every frame in it is acknowledged.
//! The budget bounds the bytes of all segments together: a record that would pass it is dropped (counted
//! by the caller), and traffic never waits. At shutdown the publisher writes how far it got to `position`,
//! so the next start re-sends nothing that was acknowledged.
//!
//! Frames are gathered in a batch of the writer's own and written whole, like the capture file's lines
//! (`jsonl_file`): a batch that fails part-way (a full disk) is cut back off the segment, so no half frame
//! is ever left for the next one to be appended to (which would send one record under another's id, or
//! not at all), and the publisher never reads past the end of the last batch written whole. A frame is
//! spooled exactly when all its bytes are in the segment; those of a failed batch are dropped, and only
//! they.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::capture::jsonl_file::CAPTURE_FILE_MODE;

const SEGMENT_SUFFIX: &str = ".spool";
const POSITION_FILE: &str = "position";
/// Bytes read from a segment at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes of frames gathered before a batch is written even if the writer's round is not over.
const BATCH: usize = 64 * 1024;

/// What the writer and the publisher share.
pub(crate) struct SpoolShared {
    /// Bytes of every segment file.
    bytes: AtomicU64,
    /// Records in the spool not yet acknowledged.
    pending: AtomicU64,
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

    pub(crate) fn acknowledged_one(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
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

/// One record as the publisher sends it.
pub(crate) struct Frame {
    pub(crate) id: String,
    /// The record's JSON, without the line feed.
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

/// What became of a batch's frames.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    /// Frames now whole in the spool.
    pub(crate) spooled: u64,
    /// Frames of a batch that could not be written whole: not in the spool.
    pub(crate) dropped: u64,
    pub(crate) error: Option<io::Error>,
}

pub(crate) struct SpoolWriter {
    dir: PathBuf,
    segment: u64,
    file: File,
    /// Whole frames not yet written, and how many.
    batch: Vec<u8>,
    batch_frames: u64,
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
/// previous run, and the reader starts where that run's acknowledgements ended.
pub(crate) fn open(dir: &Path, budget: u64) -> io::Result<(SpoolWriter, SpoolReader)> {
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
    let pending = count_frames_from(dir, &segments, start)?;
    let shared = Arc::new(SpoolShared {
        bytes: AtomicU64::new(bytes),
        pending: AtomicU64::new(pending),
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
        batch: Vec::with_capacity(BATCH),
        batch_frames: 0,
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

    /// Adds one frame to the batch; the publisher sees it once [`SpoolWriter::flush`] has written it.
    pub(crate) fn append(&mut self, id: &str, line: &[u8]) -> Appended {
        // The id ends at the first space and the frame at the line feed: neither may be inside it.
        let cleaned;
        let id = if id.contains(|c: char| c.is_ascii_whitespace()) {
            cleaned = id.replace(|c: char| c.is_ascii_whitespace(), "_");
            cleaned.as_str()
        } else {
            id
        };
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let size = (id.len() + 1 + line.len() + 1) as u64;
        if self.shared.bytes.load(Ordering::Relaxed) + self.batch.len() as u64 + size > self.budget
        {
            return Appended::OverBudget;
        }
        self.batch.extend_from_slice(id.as_bytes());
        self.batch.push(b' ');
        self.batch.extend_from_slice(line);
        self.batch.push(b'\n');
        self.batch_frames += 1;
        Appended::Batched
    }

    /// Whether the batch should be written now rather than at the end of the writer's round: it is large,
    /// or it fills the segment.
    pub(crate) fn wants_flush(&self) -> bool {
        self.batch.len() >= BATCH || self.committed + self.batch.len() as u64 >= self.segment_size
    }

    /// Writes the batch whole, or not at all (a failure part-way is cut back off the segment), and makes
    /// what was written visible to the publisher.
    pub(crate) fn flush(&mut self) -> Flushed {
        let frames = std::mem::take(&mut self.batch_frames);
        if self.batch.is_empty() {
            return Flushed::default();
        }
        let written = self.write_batch();
        self.batch.clear();
        let flushed = match written {
            Ok(length) => {
                self.committed += length;
                self.shared.bytes.fetch_add(length, Ordering::Relaxed);
                self.shared.pending.fetch_add(frames, Ordering::Relaxed);
                self.shared
                    .writer_committed
                    .store(self.committed, Ordering::Release);
                Flushed {
                    spooled: frames,
                    ..Flushed::default()
                }
            }
            Err(error) => Flushed {
                dropped: frames,
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
        let newline = self.start + self.buffer[self.start..].iter().position(|&b| b == b'\n')?;
        let frame = &self.buffer[self.start..=newline];
        self.start = newline + 1;
        self.offset += frame.len() as u64;
        let end = Position {
            segment: self.segment,
            offset: self.offset,
        };
        let line = &frame[..frame.len() - 1];
        // A frame without its separator (a write that failed half way) is skipped.
        let space = line.iter().position(|&b| b == b' ');
        match space {
            Some(space) if space > 0 => Some(Frame {
                id: String::from_utf8_lossy(&line[..space]).into_owned(),
                payload: Bytes::copy_from_slice(&line[space + 1..]),
                end,
            }),
            _ => {
                self.shared.acknowledged_one();
                self.take_buffered()
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

/// Frames left by a previous run from `start` on: the publisher's backlog, for the lag metric.
fn count_frames_from(dir: &Path, segments: &[u64], start: Position) -> io::Result<u64> {
    let mut frames = 0;
    for &segment in segments.iter().filter(|&&s| s >= start.segment) {
        let mut file = File::open(segment_path(dir, segment))?;
        if segment == start.segment {
            file.seek(SeekFrom::Start(start.offset))?;
        }
        let mut chunk = vec![0; READ_CHUNK];
        loop {
            let read = file.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            frames += chunk[..read].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn drain(reader: &mut SpoolReader) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            assert_eq!(
                &frame.payload[..],
                format!("{{\"n\":\"{}\"}}", frame.id).as_bytes()
            );
            ids.push(frame.id);
        }
        ids
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
        let (mut writer, mut reader) = open(&dir, 64 * 1024).unwrap();
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
        let (writer, mut reader) = open(&dir, 64 * 1024).unwrap();
        assert_eq!(reader.shared().pending(), 200);
        assert!(writer.close().error.is_none());
        assert_eq!(drain(&mut reader), ids[300..]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_budget_bounds_the_spool_and_released_segments_make_room() {
        let dir = scratch("budget");
        let (mut writer, mut reader) = open(&dir, 8 * 1024).unwrap();
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
}
