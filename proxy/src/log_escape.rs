//! Text that came from the network, made safe for a log line.
//!
//! A peer chooses the bytes of a SOCKS domain name, a TLS server name, an HTTP header value or a request
//! target. Logged as they are, a CR or LF starts a line the sidecar never wrote (log forging), and an ESC
//! or a C1 control (U+009B is a one-character CSI) drives the terminal of whoever reads the log. Every log
//! field that can carry peer bytes is written through [`Escaped`]: control characters become visible
//! escapes (`\r`, `\n`, `\x1b`, `\u{9b}`), as do the invisible characters that reorder or split text in a
//! viewer (bidirectional overrides, line and paragraph separators), a backslash is doubled so an escape
//! cannot be faked, and the value is cut after [`MAX_LOGGED_CHARS`] characters with a count of the rest.
//!
//! The capture records are not escaped here: they are JSON, whose encoding already escapes every control
//! character, and they keep the bytes the peer sent.

use std::fmt::{self, Write};

/// Characters of one value a log line shows; a peer cannot make a line longer than a few KiB.
pub const MAX_LOGGED_CHARS: usize = 512;

/// `value` as its `Display` writes it, escaped for a log line (see the module documentation).
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut escaping = EscapingWriter {
            out: f,
            shown: 0,
            cut: 0,
        };
        write!(escaping, "{}", self.0)?;
        let cut = escaping.cut;
        if cut > 0 {
            write!(f, "...({cut} more characters)")?;
        }
        Ok(())
    }
}

struct EscapingWriter<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    shown: usize,
    cut: usize,
}

impl Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            if self.shown == MAX_LOGGED_CHARS {
                self.cut += 1;
                continue;
            }
            self.shown += 1;
            match c {
                '\r' => self.out.write_str("\\r")?,
                '\n' => self.out.write_str("\\n")?,
                '\t' => self.out.write_str("\\t")?,
                '\\' => self.out.write_str("\\\\")?,
                c if c.is_ascii_control() => write!(self.out, "\\x{:02x}", u32::from(c))?,
                c if c.is_control() || reorders_or_splits_text(c) => {
                    write!(self.out, "\\u{{{:x}}}", u32::from(c))?
                }
                c => self.out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Characters that are not controls yet change how a viewer lays the line out: the bidirectional marks,
/// embeddings, overrides and isolates (a log line that reads differently than it is), and the Unicode line
/// and paragraph separators (a line break to some viewers).
pub(crate) fn reorders_or_splits_text(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        Escaped(text).to_string()
    }

    #[test]
    fn controls_become_visible_escapes() {
        assert_eq!(
            escaped("evil\r\n\x1b[31mFAKE\x00\x7f"),
            r"evil\r\n\x1b[31mFAKE\x00\x7f"
        );
        assert_eq!(escaped("tab\there"), r"tab\there");
        // C1 controls (U+009B is CSI on its own) and what reorders or splits a line in a viewer.
        assert_eq!(escaped("a\u{9b}31m"), r"a\u{9b}31m");
        assert_eq!(escaped("x\u{202e}gnp.exe"), r"x\u{202e}gnp.exe");
        assert_eq!(escaped("one\u{2028}two"), r"one\u{2028}two");
    }

    #[test]
    fn a_backslash_is_doubled_so_an_escape_cannot_be_faked() {
        assert_eq!(escaped(r"a\nb"), r"a\\nb");
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in [
            "api.example.test:443",
            "[::1]:8080",
            "cannot connect to db.test:5432: connection refused",
            "bücher.example",
            "日本語.jp",
        ] {
            assert_eq!(escaped(text), text);
        }
    }

    #[test]
    fn long_values_are_cut_with_a_count() {
        let long = "a".repeat(MAX_LOGGED_CHARS + 1000);
        assert_eq!(
            escaped(&long),
            format!("{}...(1000 more characters)", "a".repeat(MAX_LOGGED_CHARS))
        );
        let exact = "b".repeat(MAX_LOGGED_CHARS);
        assert_eq!(escaped(&exact), exact);
        // Escapes count as one character of the value: the line stays bounded whatever the input.
        let controls = "\x1b".repeat(MAX_LOGGED_CHARS * 2);
        let shown = escaped(&controls);
        assert!(shown.len() <= MAX_LOGGED_CHARS * 4 + 40, "{}", shown.len());
        assert!(!shown.contains('\x1b'));
    }

    #[test]
    fn it_escapes_any_display_value() {
        let target = crate::net::Target::from_host_str("evil\r\nhost", 80);
        assert_eq!(Escaped(&target).to_string(), r"evil\r\nhost:80");
    }
}
