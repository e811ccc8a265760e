//! Small reads without a buffer per connection.
//!
//! Most relayed connections carry small messages and sit idle in between, and a pod's connection pools
//! hold hundreds of them. A buffer per direction would be part of every idle connection's task (4 KiB a
//! connection for two directions of 2 KiB). Instead a relay reads a small message into its worker
//! thread's scratch buffer and writes it on within the same poll; only what the writer does not take at
//! once is copied into a [`Leftover`] of the direction's own, freed as soon as it is written.

use std::cell::RefCell;

/// Bytes read at a time while a direction carries small messages (requests, responses, pings). A read
/// that fills it means bulk data.
pub(crate) const SMALL: usize = 2 * 1024;

thread_local! {
    static SCRATCH: RefCell<[u8; SMALL]> = const { RefCell::new([0; SMALL]) };
}

/// Runs `use_it` with this thread's scratch buffer. Bytes must not stay in it past the call: the next
/// connection polled on this thread reads into it.
pub(crate) fn with_scratch<T>(use_it: impl FnOnce(&mut [u8; SMALL]) -> T) -> T {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => use_it(&mut scratch),
        // Only when a reader or writer itself relays from inside its poll: a buffer for this call alone.
        Err(_) => use_it(&mut [0; SMALL]),
    })
}

/// Bytes of a small read the writer has not taken yet; holds no memory when there are none.
#[derive(Debug, Default)]
pub(crate) struct Leftover {
    bytes: Vec<u8>,
    written: usize,
}

impl Leftover {
    /// Keeps `rest` (what is left of a read once the writer stopped taking it) until it is written.
    pub(crate) fn keep(&mut self, rest: &[u8]) {
        debug_assert!(
            self.is_empty(),
            "a direction reads only once its bytes are written"
        );
        self.bytes.extend_from_slice(rest);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.written == self.bytes.len()
    }

    /// What is still to be written.
    pub(crate) fn unwritten(&self) -> &[u8] {
        &self.bytes[self.written..]
    }

    /// `n` more bytes were written; once all are, the copy is freed.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.is_empty() {
            *self = Leftover::default();
        }
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_gives_back_its_bytes_in_order_and_frees_them_once_written() {
        let mut leftover = Leftover::default();
        assert!(leftover.is_empty() && leftover.capacity() == 0);
        leftover.keep(b"abcdef");
        leftover.wrote(2);
        assert_eq!(leftover.unwritten(), b"cdef");
        leftover.wrote(4);
        assert!(leftover.is_empty());
        assert_eq!(leftover.capacity(), 0);
    }

    #[test]
    fn a_scratch_buffer_in_use_is_not_handed_out_twice() {
        with_scratch(|outer| {
            outer[0] = 7;
            with_scratch(|inner| inner[0] = 9);
            assert_eq!(outer[0], 7);
        });
    }
}
