//! Following a capture file as the sidecar appends to it, across rotation: when the file is renamed away
//! (`PATH` becomes `PATH.1`) and a new one is created under the same name, what the old file gained is
//! read to its end, then the new file is read from its start. If the sidecar rotated more than once
//! between two looks (a small `--capture-rotate-size`), the old file is now `PATH.k`, and the files
//! rotated after it (`PATH.(k-1)` ... `PATH.1`) are read whole, oldest first, before `PATH`. A file cut
//! back to empty (`truncate`) is read again from its start.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes read from the file at a time.
const CHUNK: u64 = 1024 * 1024;

/// What following the file brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// A whole line, newline included.
    Line(Vec<u8>),
    /// The file was replaced (rotated); lines from now on are those of `path` (the followed name, or a
    /// rotated file read on the way to it), numbered from 1. `torn` holds what the previous file ended
    /// with after its last newline, if anything: a line never finished.
    Reopened {
        path: PathBuf,
        torn: Option<Vec<u8>>,
    },
    /// The file was cut shorter than what had been read; it is read again from its start.
    Truncated,
}

/// An open capture file being followed, and the name it was opened by.
pub struct FollowedFile {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    position: u64,
    /// Bytes after the last newline read: a line still being written.
    partial: Vec<u8>,
    /// Set when following started in the middle of a line: its rest is dropped, not taken for a line.
    skip_to_newline: bool,
}

impl FollowedFile {
    /// Opens `path` to follow it from its end (`from_start`: from its first byte). Returns the number of
    /// whole lines that come before the position, so lines can be named by their number in the file.
    pub fn open(path: &Path, from_start: bool) -> io::Result<(FollowedFile, usize)> {
        let mut file = File::open(path)?;
        let metadata = file.metadata()?;
        let mut lines_before = 0;
        let mut position = 0;
        let mut skip_to_newline = false;
        if !from_start {
            let mut buffer = vec![0; 64 * 1024];
            let mut last = b'\n';
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                lines_before += buffer[..read].iter().filter(|&&b| b == b'\n').count();
                last = buffer[read - 1];
                position += read as u64;
            }
            skip_to_newline = last != b'\n';
        }
        Ok((
            FollowedFile {
                path: path.to_owned(),
                file,
                identity: (metadata.dev(), metadata.ino()),
                position,
                partial: Vec::new(),
                skip_to_newline,
            },
            lines_before,
        ))
    }

    /// What the file gained since the last call, whole lines only; empty when nothing changed.
    pub fn poll(&mut self) -> io::Result<Vec<Followed>> {
        // A chunk at a time, so a large file read from its start is not held whole; a chunk may end
        // inside a line, so read on until a line is whole or the file has no more.
        loop {
            let (lines, read) = self.read_chunk()?;
            if !lines.is_empty() {
                return Ok(lines);
            }
            if read == 0 {
                break;
            }
        }
        let mut followed = Vec::new();
        let now = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            // Between the rename and the new file's creation: keep reading the old one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(followed),
            Err(e) => return Err(e),
        };
        if (now.dev(), now.ino()) != self.identity {
            // Rotated: what the writer put in the old file before it moved on comes first, then the
            // files rotated after it, then the new one.
            followed.extend(self.read_lines()?);
            for path in self.rotated_since() {
                // Gone already (rotated out of the kept ones): nothing left to read there.
                if let Ok(file) = File::open(&path) {
                    followed.extend(self.switch_to(file, path)?);
                }
            }
            let file = File::open(&self.path)?;
            followed.extend(self.switch_to(file, self.path.clone())?);
        } else if now.len() < self.position {
            self.file.seek(SeekFrom::Start(0))?;
            self.position = 0;
            self.partial.clear();
            self.skip_to_newline = false;
            followed.push(Followed::Truncated);
            followed.extend(self.read_lines()?);
        }
        Ok(followed)
    }

    /// Reads `file` (opened by `path`) from its start from now on.
    fn switch_to(&mut self, file: File, path: PathBuf) -> io::Result<Vec<Followed>> {
        let torn = (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial));
        let metadata = file.metadata()?;
        self.file = file;
        self.identity = (metadata.dev(), metadata.ino());
        self.position = 0;
        self.skip_to_newline = false;
        let mut followed = vec![Followed::Reopened { path, torn }];
        followed.extend(self.read_lines()?);
        Ok(followed)
    }

    /// The rotated files newer than the one being read, oldest first: if it is now `PATH.k`, then
    /// `PATH.(k-1)` ... `PATH.1`. Empty when it is `PATH.1` or was not found among them.
    fn rotated_since(&self) -> Vec<PathBuf> {
        let numbered = |n: usize| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for k in 1.. {
            match std::fs::metadata(numbered(k)) {
                Ok(metadata) if (metadata.dev(), metadata.ino()) == self.identity => {
                    return (1..k).rev().map(numbered).collect();
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        Vec::new()
    }

    /// Everything the file holds past the position, as whole lines.
    fn read_lines(&mut self) -> io::Result<Vec<Followed>> {
        let mut lines = Vec::new();
        loop {
            let (more, read) = self.read_chunk()?;
            lines.extend(more);
            if read == 0 {
                return Ok(lines);
            }
        }
    }

    /// Up to [`CHUNK`] bytes past the position: the lines they complete, and how many bytes were read.
    fn read_chunk(&mut self) -> io::Result<(Vec<Followed>, usize)> {
        let mut bytes = Vec::new();
        let read = (&self.file).take(CHUNK).read_to_end(&mut bytes)?;
        self.position += read as u64;
        let mut lines = Vec::new();
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            self.partial.extend_from_slice(piece);
            if self.partial.ends_with(b"\n") {
                let line = std::mem::take(&mut self.partial);
                if std::mem::take(&mut self.skip_to_newline) {
                    continue;
                }
                lines.push(Followed::Line(line));
            }
        }
        Ok((lines, read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_appended_in_pieces_and_across_a_rename() {
        let dir = std::env::temp_dir().join(format!("sidecar-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.jsonl");
        std::fs::write(&path, "old\nhalf").unwrap();
        let (mut followed, before) = FollowedFile::open(&path, false).unwrap();
        assert_eq!(before, 1);
        let append = |path: &Path, text: &str| {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .unwrap();
            file.write_all(text.as_bytes()).unwrap();
        };
        append(&path, " done\none\ntw");
        assert_eq!(
            followed.poll().unwrap(),
            [Followed::Line(b"one\n".to_vec())]
        );
        append(&path, "o\n");
        assert_eq!(
            followed.poll().unwrap(),
            [Followed::Line(b"two\n".to_vec())]
        );
        assert_eq!(followed.poll().unwrap(), []);

        std::fs::rename(&path, dir.join("c.jsonl.1")).unwrap();
        append(&dir.join("c.jsonl.1"), "three\ntorn");
        assert_eq!(
            followed.poll().unwrap(),
            [Followed::Line(b"three\n".to_vec())]
        );
        append(&path, "four\n");
        assert_eq!(
            followed.poll().unwrap(),
            [
                Followed::Reopened {
                    path: path.clone(),
                    torn: Some(b"torn".to_vec())
                },
                Followed::Line(b"four\n".to_vec())
            ]
        );

        std::fs::write(&path, "").unwrap();
        append(&path, "x\n");
        assert_eq!(
            followed.poll().unwrap(),
            [Followed::Truncated, Followed::Line(b"x\n".to_vec())]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_line_longer_than_a_chunk_comes_whole() {
        let path = std::env::temp_dir().join(format!("sidecar-follow-long-{}", std::process::id()));
        let long = format!("{}\nnext\n", "x".repeat(CHUNK as usize * 2 + 17));
        std::fs::write(&path, &long).unwrap();
        let (mut followed, before) = FollowedFile::open(&path, true).unwrap();
        assert_eq!(before, 0);
        let mut lines = followed.poll().unwrap();
        lines.extend(followed.poll().unwrap());
        assert_eq!(
            lines,
            [
                Followed::Line(long.as_bytes()[..long.len() - 5].to_vec()),
                Followed::Line(b"next\n".to_vec())
            ]
        );
        let _ = std::fs::remove_file(&path);
    }
}
