//! JSONPath-like patterns naming fields of a JSON body: `$.items[*].updated`, `$.meta`, `$..id`,
//! `$["odd key"]`, `$.list[0]`. A pattern names a field and everything inside it.

use std::fmt;

/// One step into a JSON value: an object's member or an array's item.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a value sits in a JSON body, written `$.items[0].updated`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ValuePath(pub Vec<Step>);

impl ValuePath {
    pub fn child(&self, step: Step) -> ValuePath {
        let mut steps = self.0.clone();
        steps.push(step);
        ValuePath(steps)
    }
}

impl fmt::Display for ValuePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.0 {
            match step {
                Step::Key(key) if is_plain_key(key) => write!(f, ".{key}")?,
                Step::Key(key) => write!(
                    f,
                    "[{}]",
                    serde_json::to_string(key).map_err(|_| fmt::Error)?
                )?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// One segment of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    /// `.*` or `[*]`: any member or item.
    Any,
    /// `..`: any depth, zero or more steps.
    Descend,
}

/// A pattern over [`ValuePath`]s, parsed from `--ignore-json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} is not a JSON path: {reason}; write paths like $.items[*].updated, $.meta, $..id or $[\"odd key\"]")]
pub struct JsonPathError {
    path: String,
    reason: String,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        let fail = |reason: &str| JsonPathError {
            path: text.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = text
            .trim()
            .strip_prefix('$')
            .ok_or_else(|| fail("it must start with $"))?;
        let chars: Vec<char> = rest.chars().collect();
        let mut segments = Vec::new();
        let mut at = 0;
        while at < chars.len() {
            match chars[at] {
                '.' if chars.get(at + 1) == Some(&'.') => {
                    segments.push(Segment::Descend);
                    at += 2;
                    if chars.get(at) == Some(&'[') {
                        continue;
                    }
                    let (segment, next) = member(&chars, at)
                        .ok_or_else(|| fail("`..` must be followed by a name, * or [...]"))?;
                    segments.push(segment);
                    at = next;
                }
                '.' => {
                    let (segment, next) = member(&chars, at + 1)
                        .ok_or_else(|| fail("`.` must be followed by a name or *"))?;
                    segments.push(segment);
                    at = next;
                }
                '[' => {
                    let close = chars[at..]
                        .iter()
                        .position(|&c| c == ']')
                        .map(|offset| at + offset)
                        .ok_or_else(|| fail("a `[` is not closed"))?;
                    let inside: String = chars[at + 1..close].iter().collect();
                    let inside = inside.trim();
                    let segment = if inside == "*" {
                        Segment::Any
                    } else if let Ok(index) = inside.parse::<usize>() {
                        Segment::Index(index)
                    } else if let Some(key) = quoted(inside) {
                        Segment::Key(key)
                    } else {
                        return Err(fail("inside [...] write *, an index or a quoted name"));
                    };
                    segments.push(segment);
                    at = close + 1;
                }
                _ => return Err(fail("after $ come .name, [index], [*] or ..name")),
            }
        }
        if segments.last() == Some(&Segment::Descend) {
            return Err(fail("it must not end with .."));
        }
        Ok(JsonPath {
            text: text.trim().to_owned(),
            segments,
        })
    }

    /// Whether `path` is the field this pattern names or lies inside it.
    pub fn covers(&self, path: &ValuePath) -> bool {
        covers(&self.segments, &path.0)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A member name or `*` starting at `at`, and where it ends.
fn member(chars: &[char], at: usize) -> Option<(Segment, usize)> {
    if chars.get(at) == Some(&'*') {
        return Some((Segment::Any, at + 1));
    }
    let end = chars[at..]
        .iter()
        .position(|&c| c == '.' || c == '[')
        .map_or(chars.len(), |offset| at + offset);
    (end > at).then(|| (Segment::Key(chars[at..end].iter().collect()), end))
}

fn quoted(text: &str) -> Option<String> {
    if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
        return serde_json::from_str(text).ok();
    }
    text.strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .map(str::to_owned)
}

fn covers(segments: &[Segment], steps: &[Step]) -> bool {
    let Some((segment, rest)) = segments.split_first() else {
        // The whole pattern matched: the path is the field or inside it.
        return true;
    };
    if *segment == Segment::Descend {
        return (0..=steps.len()).any(|skip| covers(rest, &steps[skip..]));
    }
    let Some((step, deeper)) = steps.split_first() else {
        return false;
    };
    let matches = match (segment, step) {
        (Segment::Any, _) => true,
        (Segment::Key(name), Step::Key(key)) => name == key,
        (Segment::Index(wanted), Step::Index(index)) => wanted == index,
        _ => false,
    };
    matches && covers(rest, deeper)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(steps: &[&str]) -> ValuePath {
        ValuePath(
            steps
                .iter()
                .map(|step| match step.parse::<usize>() {
                    Ok(index) => Step::Index(index),
                    Err(_) => Step::Key((*step).to_owned()),
                })
                .collect(),
        )
    }

    #[test]
    fn patterns_cover_their_fields_and_what_is_inside() {
        let updated = JsonPath::parse("$.items[*].updated").unwrap();
        assert!(updated.covers(&path(&["items", "3", "updated"])));
        assert!(updated.covers(&path(&["items", "3", "updated", "zone"])));
        assert!(!updated.covers(&path(&["items", "3", "name"])));
        assert!(!updated.covers(&path(&["items"])));
        let ids = JsonPath::parse("$..id").unwrap();
        assert!(ids.covers(&path(&["id"])));
        assert!(ids.covers(&path(&["a", "0", "id"])));
        assert!(!ids.covers(&path(&["a", "ids"])));
        let odd = JsonPath::parse(r#"$["odd key"][0]"#).unwrap();
        assert!(odd.covers(&path(&["odd key", "0"])));
        assert!(JsonPath::parse("$['x'].*")
            .unwrap()
            .covers(&path(&["x", "y"])));
        assert!(JsonPath::parse("$").unwrap().covers(&path(&["anything"])));
    }

    #[test]
    fn bad_patterns_are_named_with_what_is_allowed() {
        for bad in ["items", "$.", "$[x]", "$[1", "$..", "$x"] {
            let error = JsonPath::parse(bad).expect_err(bad).to_string();
            assert!(
                error.contains("write paths like $.items[*].updated"),
                "{error}"
            );
        }
    }

    #[test]
    fn concrete_paths_are_written_as_patterns_read_them() {
        let written = path(&["items", "0", "odd key"]).to_string();
        assert_eq!(written, r#"$.items[0]["odd key"]"#);
        assert!(JsonPath::parse(&written)
            .unwrap()
            .covers(&path(&["items", "0", "odd key"])));
    }
}
