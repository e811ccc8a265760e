//! The field lines of a raw HTTP/1 head, as the tap framed it: what the checks made on the connection's
//! task (is this a kubelet probe, what links this exchange) read, without the full parse that happens
//! later, on the capture writer's thread, for the heads that are recorded.

/// Each field line of `head` (request or status line, fields, blank line) after the first line, as
/// `(name, value)`: split at the first colon, the value trimmed, in the order received.
pub fn fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&byte| byte == b'\n')
        .skip(1)
        .filter_map(|line| {
            let colon = line.iter().position(|&byte| byte == b':')?;
            let (name, value) = line.split_at(colon);
            Some((name, value[1..].trim_ascii()))
        })
}

/// The value of the first field named `name` (any case) in `head`.
pub fn field<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    fields(head).find_map(|(field, value)| field.eq_ignore_ascii_case(name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_after_the_first_line_trimmed_and_in_order() {
        let head = b"GET /a:b HTTP/1.1\r\nHost: x:80\r\nX-Empty:\r\nx-two:  1 \r\nX-Two: 2\r\n\r\n";
        let seen: Vec<_> = fields(head).collect();
        assert_eq!(
            seen,
            [
                (&b"Host"[..], &b"x:80"[..]),
                (b"X-Empty", b""),
                (b"x-two", b"1"),
                (b"X-Two", b"2"),
            ]
        );
        assert_eq!(field(head, b"X-TWO"), Some(&b"1"[..]));
        assert_eq!(
            field(head, b"get /a"),
            None,
            "the request line is not a field"
        );
    }
}
