//! A request reduced to what matching compares, as one value two requests share exactly when they match:
//! the query's pairs sorted, and the body with its content codings undone, as canonical JSON (members in
//! name order, integral numbers written as integers) when it is JSON, else its bytes. Parameters and
//! fields the ignore rules leave out are removed first. The mock looks a request up by it, so a match
//! costs one hash lookup whatever the capture's size.

use serde_json::Value;

use crate::capture::content_coding::decode_content;
use crate::compare::json_path::{Step, ValuePath};
use crate::compare::Noise;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BodyPrint {
    Json(String),
    Bytes(Vec<u8>),
}

/// The body as matching compares it.
pub fn body_print(body: &[u8], headers: &[(String, String)], noise: &Noise) -> BodyPrint {
    let decoded = decode_content(body, false, headers).bytes;
    match serde_json::from_slice::<Value>(&decoded) {
        Ok(value) if !decoded.trim_ascii().is_empty() => {
            let kept = without_ignored(&ValuePath::default(), value, noise);
            BodyPrint::Json(kept.map_or_else(String::new, |value| canonical(&value)))
        }
        _ => BodyPrint::Bytes(decoded),
    }
}

/// The query's pairs as matching compares them: sorted, ignored names left out.
pub fn query_print(pairs: &[(String, String)], ignored: &[String]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(name, _)| !ignored.iter().any(|ignored| ignored == name))
        .cloned()
        .collect()
}

fn without_ignored(path: &ValuePath, value: Value, noise: &Noise) -> Option<Value> {
    if noise.ignores_json(path) {
        return None;
    }
    Some(match value {
        Value::Object(members) => Value::Object(
            members
                .into_iter()
                .filter_map(|(key, member)| {
                    let child = path.child(Step::Key(key.clone()));
                    without_ignored(&child, member, noise).map(|kept| (key, kept))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| {
                    // An ignored item keeps its place (as null), so the items after it keep theirs.
                    without_ignored(&path.child(Step::Index(index)), item, noise)
                        .unwrap_or(Value::Null)
                })
                .collect(),
        ),
        other => other,
    })
}

/// JSON with members in name order (serde_json's map is ordered by name) and numbers compared as values:
/// `1.0` and `1` print alike.
fn canonical(value: &Value) -> String {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
                format!("{}", float as i64)
            }
            Some(float) => format!("{float}"),
            None => number.to_string(),
        },
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(key, member)| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(key).unwrap_or_default(),
                        canonical(member)
                    )
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::JsonPath;

    #[test]
    fn layout_key_order_and_number_spelling_print_alike() {
        let noise = Noise::default();
        assert_eq!(
            body_print(br#"{"b":[1.0,{"z":true,"a":null}],"a":"x"}"#, &[], &noise),
            body_print(
                br#"{ "a": "x", "b": [1, {"a": null, "z": true}] }"#,
                &[],
                &noise
            )
        );
        assert_ne!(
            body_print(br#"{"a":1}"#, &[], &noise),
            body_print(br#"{"a":2}"#, &[], &noise)
        );
        assert_eq!(
            body_print(b"plain", &[], &noise),
            BodyPrint::Bytes(b"plain".to_vec())
        );
    }

    #[test]
    fn ignored_fields_are_left_out() {
        let noise = Noise::new(&[], vec![JsonPath::parse("$..at").unwrap()]);
        assert_eq!(
            body_print(br#"{"id":1,"at":5,"items":[{"at":1}]}"#, &[], &noise),
            body_print(br#"{"id":1,"at":6,"items":[{"at":2}]}"#, &[], &noise)
        );
    }
}
