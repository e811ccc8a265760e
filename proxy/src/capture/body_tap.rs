//! A bounded copy of bytes passing by: the first `limit` bytes are kept, every byte is counted.

use bytes::BytesMut;

use super::record::Body;

#[derive(Debug)]
pub struct BodyTap {
    limit: usize,
    kept: BytesMut,
    size: u64,
}

impl BodyTap {
    pub fn new(limit: usize) -> Self {
        BodyTap {
            limit,
            kept: BytesMut::new(),
            size: 0,
        }
    }

    pub fn observe(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        let room = self.limit - self.kept.len();
        if room > 0 {
            self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
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
