//! Deterministic payloads and their digests, so a relayed body is checked byte for byte.

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use sha2::{Digest, Sha256};

const CHUNK: usize = 64 * 1024;

/// The byte at `offset` of every test payload: position-dependent, so reordering or loss changes the hash.
fn byte_at(offset: u64) -> u8 {
    (offset.wrapping_mul(31) ^ (offset >> 11)) as u8
}

/// `len` bytes of the test pattern as a stream of 64 KiB chunks (never held in memory whole).
pub fn pattern_body(len: u64) -> impl Stream<Item = Bytes> + Send + 'static {
    stream::unfold(0u64, move |offset| async move {
        if offset >= len {
            return None;
        }
        let n = (len - offset).min(CHUNK as u64);
        let chunk: Vec<u8> = (offset..offset + n).map(byte_at).collect();
        Some((Bytes::from(chunk), offset + n))
    })
}

/// SHA-256 of `len` bytes of the pattern, computed independently of any transfer.
pub fn pattern_sha256(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    let mut chunk = Vec::with_capacity(CHUNK);
    while offset < len {
        let n = (len - offset).min(CHUNK as u64);
        chunk.clear();
        chunk.extend((offset..offset + n).map(byte_at));
        hasher.update(&chunk);
        offset += n;
    }
    hex(&hasher.finalize())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
