//! The engine's read buffers: bytes read from one side and not handled yet. They live only while a
//! request is in flight, and grow to large reads only while reads fill what they were given.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read at a time while messages are small.
pub const SMALL: usize = 4 * 1024;
/// Bytes read at a time once a read filled what it was given (a body in bulk).
const BULK: usize = 64 * 1024;

/// Waits for a request on an idle connection: the read goes into a small area of the task, so an idle
/// connection holds no buffer.
pub async fn read_idle<R: AsyncRead + Unpin>(from: &mut R, into: &mut Buffer) -> io::Result<usize> {
    let mut first = [0u8; 1024];
    let n = from.read(&mut first).await?;
    into.data.extend_from_slice(&first[..n]);
    Ok(n)
}

/// Bytes read from one side and not yet handled: `data[start..]`.
#[derive(Default)]
pub struct Buffer {
    data: Vec<u8>,
    start: usize,
    /// The last read filled the room it was given: bulk data, read in larger pieces.
    filled: bool,
}

impl Buffer {
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Frees the buffer once it holds nothing (between requests).
    pub fn release(&mut self) {
        if self.is_empty() {
            *self = Buffer::default();
        }
    }

    /// Reads once from `from`, appending.
    pub async fn read_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        from: &mut R,
    ) -> io::Result<usize> {
        if self.start > 0 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        let want = if self.filled { BULK } else { SMALL };
        self.data.reserve(want);
        let room = self.data.capacity() - self.data.len();
        let n = from.read_buf(&mut self.data).await?;
        self.filled = n == room;
        Ok(n)
    }
}
