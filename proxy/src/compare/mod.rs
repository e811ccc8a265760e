//! How a recorded HTTP message and another one differ, field by field: what `replay` reports about the
//! app's new answers and what the mock uses to find the nearest recorded request.
//!
//! - [`json_path`]: JSONPath-like patterns (`$.items[*].updated`) and the concrete paths of a JSON body.
//! - [`noise`]: what is not compared (the default header list, `--ignore-header`, `--ignore-json`, and
//!   fields learned from repeats in the capture).
//! - [`diff`]: status, headers and body compared (bodies decoded first; JSON as values, key order ignored).

pub mod diff;
pub mod json_path;
pub mod noise;

pub use diff::{body_differences, header_differences, trailer_differences, Difference, Message};
pub use json_path::{JsonPath, JsonPathError};
pub use noise::Noise;
