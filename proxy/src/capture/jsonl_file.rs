//! The capture file: whole JSON lines only, whatever the disk does.
//!
//! Records are gathered in a buffer of our own and written in batches. A batch that fails (a full disk,
//! a quota) may have reached the file in part; the file is then cut back to the end of the last batch that
//! was written whole, so it never keeps half a line onto which the next record would be appended. The
//! records of a failed batch are dropped, and only they: a record counts as written exactly when all its
//! bytes are in the file. Opening and rotating never follow a symbolic link, so a user who can write to the
//! capture directory cannot point the sidecar at another file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::error;

/// The mode a capture file is created with: records hold headers and bodies (tokens, personal data), so
/// only the sidecar's own user may read them, whatever the umask. The umask can only remove bits from
/// this, never add any. A file that already exists keeps the mode it has.
pub(crate) const CAPTURE_FILE_MODE: u32 = 0o600;

/// Bytes gathered before a batch is written even if more records are waiting.
const BATCH: usize = 64 * 1024;

/// Size-based rotation: when the file reaches `max_bytes` it becomes `PATH.1` (older files shift to
/// `PATH.2` ... `PATH.<keep>`, the oldest is removed) and a new file is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: usize,
}

pub(crate) struct JsonlFile {
    path: PathBuf,
    file: File,
    /// Whole lines not yet written.
    batch: Vec<u8>,
    /// The file's length after the last batch written whole: always at the end of a line.
    committed: u64,
    /// A failed batch could not be cut back off the file: the next batch starts on a new line.
    torn: bool,
    rotation: Option<Rotation>,
}

impl JsonlFile {
    pub(crate) fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<JsonlFile> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(CAPTURE_FILE_MODE)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| refuse_symlink(e, path))?;
        let mut committed = file.metadata()?.len();
        if committed > 0 && !ends_with_newline(&mut file)? {
            // A previous run was killed mid-line: start ours on a fresh line, so only that one line is
            // damaged rather than it and our first record.
            file.write_all(b"\n")?;
            committed += 1;
        }
        Ok(JsonlFile {
            path: path.to_owned(),
            file,
            batch: Vec::with_capacity(BATCH),
            committed,
            torn: false,
            rotation,
        })
    }

    /// Adds one whole line (ending in `\n`) to the batch.
    pub(crate) fn push_line(&mut self, line: &[u8]) {
        self.batch.extend_from_slice(line);
    }

    /// Whether the batch should be written now rather than at the end of the writer's round: it is large,
    /// or it takes the file to its rotation size.
    pub(crate) fn wants_flush(&self) -> bool {
        self.batch.len() >= BATCH
            || self
                .rotation
                .is_some_and(|r| self.committed + self.batch.len() as u64 >= r.max_bytes)
    }

    /// Writes the batch whole, or not at all: on failure the file is cut back to its last whole line and
    /// the batch is gone (its records are the caller's to count as dropped).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.torn {
            self.torn = false;
            if self.cut_back().is_err() {
                // Still cannot cut the partial line off: end it, so our records start on a line of their own.
                self.batch.insert(0, b'\n');
                self.committed = self.file.metadata()?.len();
            }
        }
        let written = self.file.write_all(&self.batch);
        let length = self.batch.len() as u64;
        self.batch.clear();
        if let Err(e) = written {
            if self.cut_back().is_err() {
                self.torn = true;
            }
            return Err(e);
        }
        self.committed += length;
        if self
            .rotation
            .is_some_and(|rotation| self.committed >= rotation.max_bytes)
        {
            self.rotate();
        }
        Ok(())
    }

    /// Cuts the file back to its last whole line.
    fn cut_back(&mut self) -> io::Result<()> {
        self.file.set_len(self.committed)?;
        // Appending follows the new end; the seek keeps a handle without O_APPEND right too.
        self.file.seek(SeekFrom::Start(self.committed))?;
        Ok(())
    }

    fn rotate(&mut self) {
        let Some(rotation) = self.rotation else {
            return;
        };
        // The file is whole; a failed rotation only means the file grows on. Counting from zero again spaces
        // out the retries instead of failing every batch.
        self.committed = 0;
        if let Err(e) = rotate(&self.path, rotation.keep) {
            error!(error = %e, path = %self.path.display(), "cannot rotate the capture file; writing on");
            self.committed = self.file.metadata().map(|m| m.len()).unwrap_or(0);
            return;
        }
        match create_private(&self.path) {
            Ok(fresh) => self.file = fresh,
            Err(e) => {
                self.committed = self.file.metadata().map(|m| m.len()).unwrap_or(0);
                error!(error = %e, path = %self.path.display(), "cannot start a new capture file; writing on to the rotated one")
            }
        }
    }
}

/// A fresh, empty file created [`CAPTURE_FILE_MODE`]: a capture file after a rotation, like the first one,
/// and a HAR export, which holds the same data. Created exclusively, so nothing put at `path` in between
/// (a symbolic link to someone else's file) is ever written through.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refuse_symlink(
                io::Error::from_raw_os_error(nix::libc::ELOOP),
                path,
            ))
        }
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(CAPTURE_FILE_MODE)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// The error for a capture path that is a symbolic link, saying so rather than "too many levels of links".
fn refuse_symlink(error: io::Error, path: &Path) -> io::Error {
    if error.raw_os_error() == Some(nix::libc::ELOOP) {
        io::Error::other(format!(
            "{} is a symbolic link; the sidecar writes captures only to a regular file it can open without following links (give the link's target instead)",
            path.display()
        ))
    } else {
        error
    }
}

fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// `PATH` → `PATH.1`, `PATH.1` → `PATH.2`, ... keeping `keep` old files.
fn rotate(path: &Path, keep: usize) -> io::Result<()> {
    let numbered = |n: usize| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let keep = keep.max(1);
    let _ = fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            fs::rename(&from, numbered(n + 1))?;
        }
    }
    fs::rename(path, numbered(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jsonl-file-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_capture_path_that_is_a_symlink_is_refused_and_its_target_left_alone() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        fs::write(&victim, b"root's file\n").unwrap();
        let link = dir.join("capture.jsonl");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let refused = JsonlFile::open(&link, None).err().expect("refused");
        assert!(
            refused.to_string().contains("is a symbolic link"),
            "{refused}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"root's file\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_file_is_never_created_through_a_symlink() {
        // What rotation does after renaming the full file away: a link planted at the path then (by anyone
        // who can write to the directory) is refused rather than followed.
        let dir = scratch("create");
        let victim = dir.join("victim");
        fs::write(&victim, b"root's file\n").unwrap();
        let path = dir.join("capture.jsonl");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let refused = create_private(&path).expect_err("refused");
        assert!(
            refused.to_string().contains("is a symbolic link"),
            "{refused}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"root's file\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_whole_files() {
        let dir = scratch("rotation");
        let path = dir.join("capture.jsonl");
        let rotation = Rotation {
            max_bytes: 20,
            keep: 2,
        };
        let mut file = JsonlFile::open(&path, Some(rotation)).unwrap();
        for n in 0..5 {
            file.push_line(format!("{{\"record\":{n}}}\n").as_bytes());
            if file.wants_flush() {
                file.flush().unwrap();
            }
        }
        file.flush().unwrap();
        let old = fs::read_to_string(dir.join("capture.jsonl.1")).unwrap();
        let older = fs::read_to_string(dir.join("capture.jsonl.2")).unwrap();
        let current = fs::read_to_string(&path).unwrap();
        assert_eq!(
            (older.as_str(), old.as_str(), current.as_str()),
            (
                "{\"record\":0}\n{\"record\":1}\n",
                "{\"record\":2}\n{\"record\":3}\n",
                "{\"record\":4}\n"
            ),
            "each file ends at the line that took it past 20 bytes"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
