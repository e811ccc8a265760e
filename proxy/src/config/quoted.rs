//! A user's value as an error message quotes it: Rust's string escaping, so a newline or a quote still gives
//! one unambiguous line, and at most [`QUOTE_LIMIT`] bytes of it, so a megabyte annotation does not come
//! back whole in a denial, a log line and the API server's event (the webhook echoed a 4 MB value).
//!
//! A value within the limit is quoted exactly as `{value:?}` would; a longer one shows its beginning, then
//! how long it is: `"aaaa…" (4194304 bytes; the first 200 shown)`.

use std::fmt;

/// The most bytes of a value a message quotes; enough for any value that is a typo rather than an attack.
pub const QUOTE_LIMIT: usize = 200;

/// Displays `0` as a message quotes a user's value (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.0;
        if value.len() <= QUOTE_LIMIT {
            return write!(f, "{value:?}");
        }
        let shown = beginning(value);
        let escaped = format!("{shown:?}");
        // The beginning, with the closing quote after an ellipsis that says it goes on.
        let open = &escaped[..escaped.len() - 1];
        write!(
            f,
            "{open}…\" ({} bytes; the first {} shown)",
            value.len(),
            shown.len()
        )
    }
}

/// `text` cut to [`QUOTE_LIMIT`] bytes (at a character boundary) with `…` when it was longer: for a message
/// that is not ours to phrase (a parser's error can quote the whole input it choked on).
pub fn excerpt(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= QUOTE_LIMIT {
        return text.into();
    }
    let shown = beginning(text);
    format!("{shown}… ({} bytes in all)", text.len()).into()
}

/// The longest beginning of `text` within [`QUOTE_LIMIT`] bytes that ends at a character boundary.
fn beginning(text: &str) -> &str {
    let mut end = QUOTE_LIMIT.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_value_is_quoted_as_debug_would() {
        for value in ["", "dual", "a\nb \"c\"", "ünïcode"] {
            assert_eq!(Quoted(value).to_string(), format!("{value:?}"));
        }
    }

    #[test]
    fn a_long_value_shows_its_beginning_and_length() {
        let value = "a".repeat(4 << 20);
        assert_eq!(
            Quoted(&value).to_string(),
            format!(
                "\"{}…\" (4194304 bytes; the first 200 shown)",
                "a".repeat(200)
            )
        );
        // Cut at a character boundary: "é" is two bytes, the 200th byte falls inside one.
        let value = format!("a{}", "é".repeat(1000));
        let quoted = Quoted(&value).to_string();
        assert!(
            quoted.ends_with("…\" (2001 bytes; the first 199 shown)"),
            "{quoted}"
        );
        assert_eq!(excerpt(&value).len(), 199 + "… (2001 bytes in all)".len());
    }
}
