//! A check that a header block is whole before the HPACK decoder sees it.
//!
//! httlib-hpack 0.1.3 decodes quickly (its Huffman decoder is table-driven) but indexes past the end of a
//! block whose last integer or string is cut short, which panics; our fuzz target `capture_tap` found it.
//! So the tap first walks the block's representations (RFC 7541 §6: prefixed integers and string
//! lengths only, no Huffman, no table) and hands the decoder only blocks in which every one is complete.
//! A block that is not is what a broken peer sends: the connection is followed as a stream.

/// Whether every representation in `block` is complete.
pub fn is_whole(mut block: &[u8]) -> bool {
    while let Some(&first) = block.first() {
        let step = if first & 0x80 != 0 {
            // Indexed field: the index only.
            integer(block, 7)
        } else if first & 0xc0 == 0x40 {
            literal(block, 6)
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            integer(block, 5)
        } else {
            // Literal without indexing, or never indexed.
            literal(block, 4)
        };
        match step {
            Some(used) => block = &block[used..],
            None => return false,
        }
    }
    true
}

/// A literal field: an index with `prefix` bits, then a name string when the index is 0, then the value.
fn literal(block: &[u8], prefix: u8) -> Option<usize> {
    let (index, mut used) = integer_value(block, prefix)?;
    if index == 0 {
        used += string(&block[used..])?;
    }
    used += string(&block[used..])?;
    Some(used)
}

/// A string: its length (7-bit prefix, after the Huffman flag), then that many bytes.
fn string(block: &[u8]) -> Option<usize> {
    let (length, used) = integer_value(block, 7)?;
    let end = used.checked_add(usize::try_from(length).ok()?)?;
    (end <= block.len()).then_some(end)
}

fn integer(block: &[u8], prefix: u8) -> Option<usize> {
    integer_value(block, prefix).map(|(_, used)| used)
}

/// A prefixed integer (RFC 7541 §5.1): its value and the bytes it takes, or `None` when it is cut short
/// or longer than five bytes (the decoder's own limit).
fn integer_value(block: &[u8], prefix: u8) -> Option<(u64, usize)> {
    let mask = (1u16 << prefix) as u64 - 1;
    let mut value = u64::from(*block.first()?) & mask;
    if value < mask {
        return Some((value, 1));
    }
    for (at, &byte) in block.iter().enumerate().skip(1).take(4) {
        value += u64::from(byte & 0x7f) << (7 * (at - 1));
        if byte & 0x80 == 0 {
            return Some((value, at + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::is_whole;

    #[test]
    fn whole_blocks_pass_and_cut_ones_do_not() {
        // :method GET (indexed 2), a literal with a new name "a": "b", a size update to 4096.
        let block = [0x82, 0x40, 0x01, b'a', 0x01, b'b', 0x3f, 0xe1, 0x1f];
        assert!(is_whole(&block));
        for cut in 1..block.len() {
            let whole = matches!(cut, 1 | 6);
            assert_eq!(is_whole(&block[..cut]), whole, "cut at {cut}");
        }
        // A string longer than what follows, and an integer that never ends.
        assert!(!is_whole(&[0x00, 0x05, b'a']));
        assert!(!is_whole(&[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
        assert!(is_whole(&[]));
    }
}
