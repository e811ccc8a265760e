//! The JSON tokens a record line is made of, appended straight to the line: objects with fixed keys,
//! strings, integers, floats and booleans. The record writer ([`super::record_view`]) is the only JSON
//! encoder of records, and it writes through these.
//!
//! Why not serde_json's serializer: it escapes strings one byte at a time, which the capture writer's
//! profile put at about a fifth of its samples (docs/benchmarks.md); `json_escape_simd` (sonic-rs'
//! escaping) scans 16 to 32 bytes at a step and writes the same bytes. Keys are fixed ASCII names, written
//! without a scan at all. What goes out is byte for byte what serde_json writes for the same values
//! (`tap/record_golden.rs` and the tests below hold that).

/// An object being written into a line: `{`, then each field with its separating comma, then `}`.
pub struct JsonObject<'l> {
    line: &'l mut Vec<u8>,
    has_fields: bool,
}

impl<'l> JsonObject<'l> {
    /// Opens an object at the end of `line`.
    pub fn open(line: &'l mut Vec<u8>) -> JsonObject<'l> {
        line.push(b'{');
        JsonObject {
            line,
            has_fields: false,
        }
    }

    /// Writes `key` (and the comma before it, after the first field) and hands back the line for the
    /// field's value, which the caller must write next.
    pub fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(
            key.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_'),
            "record keys are plain names, written unescaped: {key}"
        );
        separate(self.line, &mut self.has_fields);
        self.line.push(b'"');
        self.line.extend_from_slice(key.as_bytes());
        self.line.extend_from_slice(b"\":");
        self.line
    }

    pub fn str(&mut self, key: &'static str, value: &str) {
        string(self.key(key), value);
    }

    pub fn u64(&mut self, key: &'static str, value: u64) {
        integer(self.key(key), value);
    }

    pub fn f64(&mut self, key: &'static str, value: f64) {
        float(self.key(key), value);
    }

    pub fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key)
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Fields already encoded elsewhere (`"a":1,"b":2`, no comma at either end), written as they are.
    pub fn encoded_fields(&mut self, fields: &[u8]) {
        if fields.is_empty() {
            return;
        }
        separate(self.line, &mut self.has_fields);
        self.line.extend_from_slice(fields);
    }

    /// Writes the object's `}`.
    pub fn close(self) {
        self.line.push(b'}');
    }
}

/// `value` as a JSON string, quotes included.
pub fn string(line: &mut Vec<u8>, value: &str) {
    json_escape_simd::escape_into(value, line);
}

/// Text known to need no escaping (digits, hex, the RFC 3339 alphabet, base64) as a JSON string.
pub fn plain_string(line: &mut Vec<u8>, value: &[u8]) {
    debug_assert!(
        value
            .iter()
            .all(|&byte| (0x20..0x80).contains(&byte) && byte != b'"' && byte != b'\\'),
        "plain strings need no escaping"
    );
    line.push(b'"');
    line.extend_from_slice(value);
    line.push(b'"');
}

pub fn integer(line: &mut Vec<u8>, value: u64) {
    line.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A float as serde_json writes it (shortest round-trip digits; `null` when not finite), through
/// serde_json itself: one per record, not worth a second formatter.
pub fn float(line: &mut Vec<u8>, value: f64) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *line, &value);
}

/// The comma before every member of an object or array but the first.
fn separate(line: &mut Vec<u8>, has_members: &mut bool) {
    if *has_members {
        line.push(b',');
    }
    *has_members = true;
}

/// An array being written into a line: `[`, then each item with its separating comma, then `]`.
pub struct JsonArray<'l> {
    line: &'l mut Vec<u8>,
    has_items: bool,
}

impl<'l> JsonArray<'l> {
    pub fn open(line: &'l mut Vec<u8>) -> JsonArray<'l> {
        line.push(b'[');
        JsonArray {
            line,
            has_items: false,
        }
    }

    /// Writes the comma before the item (after the first) and hands back the line for the item, which
    /// the caller must write next.
    pub fn item(&mut self) -> &mut Vec<u8> {
        separate(self.line, &mut self.has_items);
        self.line
    }

    /// Writes the array's `]`.
    pub fn close(self) {
        self.line.push(b']');
    }
}

/// A list of `[name, value]` pairs, as headers and trailers are written.
pub struct PairList<'l>(JsonArray<'l>);

impl<'l> PairList<'l> {
    pub fn open(line: &'l mut Vec<u8>) -> PairList<'l> {
        PairList(JsonArray::open(line))
    }

    pub fn pair(&mut self, name: &str, value: &str) {
        let line = self.0.item();
        line.push(b'[');
        string(line, name);
        line.push(b',');
        string(line, value);
        line.push(b']');
    }

    pub fn close(self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_serde_json_writes(value: &str) {
        let mut line = Vec::new();
        string(&mut line, value);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            serde_json::to_string(value).unwrap(),
            "{value:?}"
        );
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every ASCII character, alone and inside text on either side of a SIMD step's width.
        for byte in 0u8..128 {
            let character = char::from(byte);
            as_serde_json_writes(&character.to_string());
            for width in [7, 15, 16, 17, 31, 32, 33, 63, 64, 65] {
                let before = "a".repeat(width);
                as_serde_json_writes(&format!("{before}{character}{before}"));
            }
        }
        for text in [
            "",
            "plain",
            "caf\u{e9} \u{2603} \u{1f600}",
            "\u{2028}\u{2029}\u{7f}",
            "{\"json\": [\"body\", 1, null]}\r\n",
            "tab\tnew\nline\u{0}nul\u{1b}[31m",
        ] {
            as_serde_json_writes(text);
            as_serde_json_writes(&text.repeat(40));
        }
    }

    #[test]
    fn objects_numbers_and_pairs_are_written_as_serde_json_writes_them() {
        let mut line = Vec::new();
        let mut object = JsonObject::open(&mut line);
        object.u64("id", u64::MAX);
        object.u64("zero", 0);
        object.f64("duration_ms", 0.1 + 0.2);
        object.f64("whole", 3.0);
        object.f64("nan", f64::NAN);
        object.bool("yes", true);
        object.bool("no", false);
        object.encoded_fields(b"\"shared\":\"x\"");
        let mut pairs = PairList::open(object.key("headers"));
        pairs.pair("host", "example.com");
        pairs.pair("x-quote", "a\"b");
        pairs.close();
        plain_string(object.key("start"), b"2026-12-07T21:00:00.000001Z");
        object.close();

        let expected = serde_json::json!({
            "id": u64::MAX, "zero": 0, "duration_ms": 0.1 + 0.2, "whole": 3.0, "nan": null,
            "yes": true, "no": false, "shared": "x",
            "headers": [["host", "example.com"], ["x-quote", "a\"b"]],
            "start": "2026-12-07T21:00:00.000001Z",
        });
        let written: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(written, expected);
        // Key order and number spelling as serde_json's own output of the same fields.
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"id\":18446744073709551615,\"zero\":0,\"duration_ms\":0.30000000000000004,\
             \"whole\":3.0,\"nan\":null,\"yes\":true,\"no\":false,\"shared\":\"x\",\
             \"headers\":[[\"host\",\"example.com\"],[\"x-quote\",\"a\\\"b\"]],\
             \"start\":\"2026-12-07T21:00:00.000001Z\"}"
        );
    }

    #[test]
    fn an_object_without_fields_is_empty_braces() {
        let mut line = Vec::new();
        let mut object = JsonObject::open(&mut line);
        object.encoded_fields(b"");
        object.close();
        assert_eq!(line, b"{}");
    }
}
