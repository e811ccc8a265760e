//! Header-field rules both heads share, on fields as httparse hands them over: which are hop-by-hop
//! (the same set as [`crate::http::headers::remove_hop_by_hop`]), and writing a field out.

/// Connection-specific fields of RFC 9110 §7.6.1, plus the de-facto `Proxy-Connection` and `Keep-Alive`,
/// and `Upgrade` (put back by the upgrade path when an upgrade is really proxied).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// What a head's `Connection` fields say, and the fields they name as hop-by-hop.
#[derive(Default)]
pub struct ConnectionField<'a> {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    named: Vec<&'a [u8]>,
}

impl<'a> ConnectionField<'a> {
    pub fn of(fields: &[httparse::Header<'a>]) -> Self {
        let mut connection = ConnectionField::default();
        for field in fields {
            if !field.name.eq_ignore_ascii_case("connection") {
                continue;
            }
            for token in field.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    connection.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    connection.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    connection.upgrade = true;
                }
                if !token.is_empty() {
                    connection.named.push(token);
                }
            }
        }
        connection
    }

    /// Whether the field ends at this hop: a hop-by-hop field, or one the `Connection` field names.
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
            || self
                .named
                .iter()
                .any(|named| named.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Whether a `TE` field says `trailers` (kept through the hop: gRPC over HTTP/2 relies on it).
pub fn keeps_trailers(fields: &[httparse::Header<'_>]) -> bool {
    fields.iter().any(|field| {
        field.name.eq_ignore_ascii_case("te") && field.value.eq_ignore_ascii_case(b"trailers")
    })
}

/// Writes `name: value` and the line end.
pub fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The values of the fields named `name`, in order.
pub fn values<'h, 'b>(
    fields: &'h [httparse::Header<'b>],
    name: &'static str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    fields
        .iter()
        .filter(move |field| field.name.eq_ignore_ascii_case(name))
        .map(|field| field.value)
}
