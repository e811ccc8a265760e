//! Query strings and urlencoded forms as HAR name/value pairs, percent-decoded.

use super::model::NameValue;

/// `name=value` pairs of a URL's query, decoded; the fragment is not part of it.
pub(super) fn query_string(url: &str) -> Vec<NameValue> {
    match url.split_once('?') {
        Some((_, rest)) => parse_pairs(rest.split('#').next().unwrap_or_default()),
        None => Vec::new(),
    }
}

/// `a=1&b=2` (a query string or a urlencoded form), each part percent-decoded.
pub(super) fn parse_pairs(text: &str) -> Vec<NameValue> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            NameValue {
                name: percent_decode(name),
                value: percent_decode(value),
            }
        })
        .collect()
}

/// `%XX` and `+` (a space in queries and forms) decoded; the raw text if the result is not UTF-8.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

fn hex(byte: Option<&u8>) -> Option<u8> {
    let byte = *byte?;
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "%ff");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }
}
