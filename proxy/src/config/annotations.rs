//! The Kubernetes downward-API annotations file: one `key="value"` line per annotation.
//!
//! The kubelet writes each line as Go's `%s=%q`, so values are Go-quoted strings (`\"`, `\\`, `\n`, `\t`,
//! `\xNN`, `\uNNNN`, ...). Parsing is pure; reading the file is the caller's business.

use super::settings::RawSettings;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotations file line {line}: {reason}; expected key=\"value\" as the Kubernetes downward API writes it")]
pub struct AnnotationsFileError {
    pub line: usize,
    pub reason: String,
}

/// Parses the whole file into the spec's settings (annotations of other owners are skipped).
pub fn parse_annotations_file(text: &str) -> Result<RawSettings, AnnotationsFileError> {
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |reason: &str| AnnotationsFileError {
            line: line_no,
            reason: reason.to_owned(),
        };
        let (key, quoted) = line.split_once('=').ok_or_else(|| fail("no '=' found"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(fail("empty key"));
        }
        let value = unquote_go(quoted.trim()).map_err(|reason| fail(&reason))?;
        pairs.push((key.to_owned(), value));
    }
    Ok(RawSettings::from_annotations(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

/// Undoes Go's `strconv.Quote`. `\xNN` stands for one byte (Go writes it for bytes that are not valid
/// UTF-8), so the value is rebuilt as bytes; bytes that still do not form UTF-8 become U+FFFD.
fn unquote_go(quoted: &str) -> Result<String, String> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|_| quoted.len() >= 2)
        .ok_or_else(|| "value is not a double-quoted string".to_owned())?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let push =
        |out: &mut Vec<u8>, c: char| out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Err("unescaped '\"' inside the value".to_owned()),
            '\\' => {
                let escaped = chars.next().ok_or("value ends in a lone backslash")?;
                let decoded = match escaped {
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    'x' => {
                        let byte = hex_value(&mut chars, 2)?;
                        out.push(byte as u8);
                        continue;
                    }
                    'u' => hex_char(&mut chars, 4)?,
                    'U' => hex_char(&mut chars, 8)?,
                    other => return Err(format!("unknown escape '\\{other}'")),
                };
                push(&mut out, decoded);
            }
            c => push(&mut out, c),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(chars: &mut std::str::Chars<'_>, digits: usize) -> Result<u32, String> {
    let hex: String = chars.by_ref().take(digits).collect();
    if hex.len() != digits {
        return Err("escape sequence cut short".to_owned());
    }
    u32::from_str_radix(&hex, 16).map_err(|_| format!("invalid escape value {hex}"))
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Result<char, String> {
    let hex: String = chars.clone().take(digits).collect();
    hex_value(chars, digits)
        .ok()
        .and_then(char::from_u32)
        .ok_or_else(|| format!("invalid escape value {hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Setting, Source};

    #[test]
    fn reads_the_kubelet_format() {
        let text = "kubernetes.io/config.seen=\"2026-11-26T10:00:00Z\"\n\
                    sidecar.speedscale.com/inject=\"true\"\n\
                    sidecar.speedscale.com/proxy-port=\"8080\"\n\
                    sidecar.speedscale.com/proxy-type=\"dual\"\n";
        let raw = parse_annotations_file(text).unwrap();
        let port = raw.get(Setting::ProxyPort).unwrap();
        assert_eq!(port.value, "8080");
        assert_eq!(port.source, Source::Annotation);
        assert_eq!(raw.get(Setting::ProxyType).unwrap().value, "dual");
    }

    #[test]
    fn x_escapes_are_bytes() {
        // Go writes "é" as-is, but a lone 0xC3 0xA9 pair escaped byte by byte must come back as "é" too.
        assert_eq!(unquote_go(r#""\xc3\xa9""#).unwrap(), "é");
        assert_eq!(unquote_go(r#""\xff""#).unwrap(), "\u{fffd}");
    }

    #[test]
    fn undoes_go_quoting() {
        assert_eq!(
            unquote_go(r#""a\"b\\c\n\x41\u00e9""#).unwrap(),
            "a\"b\\c\nAé"
        );
    }

    #[test]
    fn refuses_unquoted_values_with_the_line_number() {
        let err = parse_annotations_file("a=\"1\"\nsidecar.speedscale.com/proxy-port=8080\n")
            .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err
            .to_string()
            .starts_with("annotations file line 2: value is not a double-quoted string"));
    }

    #[test]
    fn multi_line_values_arrive_escaped_on_one_line() {
        let raw = parse_annotations_file("sidecar.speedscale.com/proxy-host=\"app\\n\"").unwrap();
        assert_eq!(raw.get(Setting::ProxyHost).unwrap().value, "app\n");
    }
}
