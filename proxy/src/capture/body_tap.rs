//! A bounded copy of bytes passing by: the first `limit` bytes are kept, every byte is counted.

use bytes::BytesMut;

use super::record::Body;
use crate::budget::{Purpose, Reservation};

/// A bounded copy of bytes passing by. The kept bytes are drawn from the memory budget: without budget to
/// spare, a copy keeps what it has, and its body is marked truncated.
#[derive(Debug)]
pub struct BodyTap {
    limit: usize,
    kept: BytesMut,
    size: u64,
    held: Reservation,
}

impl BodyTap {
    pub fn new(limit: usize) -> Self {
        BodyTap {
            limit,
            kept: BytesMut::new(),
            size: 0,
            held: Reservation::default(),
        }
    }

    pub fn observe(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        let room = self.limit - self.kept.len();
        let take = chunk.len().min(room);
        if take > 0 && self.held.grow(Purpose::CaptureCopy, take) {
            self.kept.extend_from_slice(&chunk[..take]);
        } else if take > 0 {
            // Out of budget: nothing more is kept, so the copy ends here rather than having a gap.
            self.limit = self.kept.len();
        }
    }

    pub fn finish(self, complete: bool) -> Body {
        Body {
            size: self.size,
            truncated: self.size > self.kept.len() as u64,
            base64: self.kept.freeze(),
            complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_them_all() {
        let mut tap = BodyTap::new(4);
        tap.observe(b"abc");
        tap.observe(b"defg");
        let body = tap.finish(true);
        assert_eq!(
            (body.size, body.truncated, &body.base64[..]),
            (7, true, &b"abcd"[..])
        );
    }

    #[test]
    fn a_zero_limit_keeps_nothing() {
        let mut tap = BodyTap::new(0);
        tap.observe(b"abc");
        let body = tap.finish(true);
        assert_eq!((body.size, body.truncated, body.base64.len()), (3, true, 0));
    }
}
