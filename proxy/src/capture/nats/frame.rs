//! A spool frame: one NATS message, fixed when its records are spooled so that every send of it (the first,
//! a re-send after an outage, a re-send by the next process) is byte-identical under the same id.
//!
//! A frame is `ID SP RECORDS SP LENGTH LF PAYLOAD`: the message id (the uid of its first record), how many
//! records it carries, and the payload's length in bytes; the payload is the records' JSON lines, each
//! ending in `\n`, exactly as the capture file holds them. The length lets the reader take a frame without
//! looking at every byte of it, and makes a frame cut short by a crash recognisable (it is incomplete).
//!
//! Spools written before messages carried several records hold frames `ID SP JSON LF`, one record each;
//! they are still read, as messages of one record (the byte after the first space tells them apart: a
//! record's JSON starts with `{`, a record count with a digit).

/// A frame as read from the spool.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// A whole frame, `size` bytes from the start of what was parsed.
    Message {
        id: &'a [u8],
        records: u64,
        /// The records' JSON lines, each ending in `\n`.
        payload: &'a [u8],
        size: usize,
    },
    /// Not a frame (a stray line, a damaged header): `size` bytes to skip.
    Junk { size: usize },
    /// The frame goes on past what was given.
    Incomplete,
}

/// Appends a frame's header for a payload of `length` bytes holding `records` records.
pub(crate) fn push_header(out: &mut Vec<u8>, id: &str, records: u64, length: usize) {
    out.extend_from_slice(id.as_bytes());
    out.push(b' ');
    out.extend_from_slice(records.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(length.to_string().as_bytes());
    out.push(b'\n');
}

/// The frame at the start of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Parsed<'_> {
    let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
        return Parsed::Incomplete;
    };
    let line = &bytes[..newline];
    let junk = Parsed::Junk { size: newline + 1 };
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return junk;
    };
    let id = &line[..space];
    // An id never starts with `{`: such a line is a record's JSON out of place.
    if id.is_empty() || id[0] == b'{' {
        return junk;
    }
    let rest = &line[space + 1..];
    if rest.first() == Some(&b'{') {
        // The frame of a spool written before messages carried several records: one record, its line.
        return Parsed::Message {
            id,
            records: 1,
            payload: &bytes[space + 1..=newline],
            size: newline + 1,
        };
    }
    let Some((records, length)) = std::str::from_utf8(rest)
        .ok()
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(records, length)| {
            Some((records.parse::<u64>().ok()?, length.parse::<usize>().ok()?))
        })
        .filter(|&(records, length)| records > 0 && length > 0)
    else {
        return junk;
    };
    let start = newline + 1;
    let Some(end) = start.checked_add(length) else {
        return junk;
    };
    if bytes.len() < end {
        return Parsed::Incomplete;
    }
    let payload = &bytes[start..end];
    if payload.last() != Some(&b'\n') {
        // Not where a frame's payload ends: the header is damaged. Only the header is skipped.
        return junk;
    }
    Parsed::Message {
        id,
        records,
        payload,
        size: end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: &str, lines: &[&str]) -> Vec<u8> {
        let payload: String = lines.iter().map(|line| format!("{line}\n")).collect();
        let mut out = Vec::new();
        push_header(&mut out, id, lines.len() as u64, payload.len());
        out.extend_from_slice(payload.as_bytes());
        out
    }

    #[test]
    fn a_frame_reads_back_as_its_id_count_and_lines() {
        let bytes = frame("u1", &[r#"{"a":1}"#, r#"{"a":2}"#]);
        assert_eq!(
            parse(&bytes),
            Parsed::Message {
                id: b"u1",
                records: 2,
                payload: b"{\"a\":1}\n{\"a\":2}\n",
                size: bytes.len()
            }
        );
        for cut in 0..bytes.len() {
            assert_eq!(parse(&bytes[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn an_older_spools_frame_is_a_message_of_one_record() {
        let bytes = b"u7 {\"a\":\"b c\"}\nu8 1 8\n{\"a\":3}\n";
        let Parsed::Message {
            id,
            records,
            payload,
            size,
        } = parse(bytes)
        else {
            panic!("{:?}", parse(bytes));
        };
        assert_eq!(
            (id, records, payload),
            (&b"u7"[..], 1, &b"{\"a\":\"b c\"}\n"[..])
        );
        assert!(matches!(
            parse(&bytes[size..]),
            Parsed::Message { records: 1, .. }
        ));
    }

    #[test]
    fn damaged_headers_and_stray_lines_are_skipped_a_line_at_a_time() {
        assert_eq!(parse(b"{\"a\":1} x\n"), Parsed::Junk { size: 10 });
        assert_eq!(parse(b"nospace\n"), Parsed::Junk { size: 8 });
        assert_eq!(parse(b"u1 x 3\nab\n"), Parsed::Junk { size: 7 });
        assert_eq!(parse(b"u1 0 3\nab\n"), Parsed::Junk { size: 7 });
        // The length does not end on a line feed.
        assert_eq!(parse(b"u1 1 2\nab\n"), Parsed::Junk { size: 7 });
    }
}
