//! HAR 1.2 export of capture records (`sidecar-proxy capture export --har`).
//!
//! [`to_har`] is the pure mapping: every `kind: http` record becomes one HAR entry, stream records are
//! skipped and counted. [`read_records`] and [`export_files`] are the command around it: JSON lines in,
//! one HAR document out, and a bad line reported by file and line number ([`read_capture`] is the one
//! reader of capture files: it skips such a line, or refuses the input, as its caller asks). docs/har-export.md describes
//! the mapping for users; change both together.
//!
//! The HAR 1.2 specification: <http://www.softwareishard.com/blog/har-12-spec/>. Custom fields start with
//! an underscore, as the specification allows (`_sidecar`, `_error`, `_encoding`).
//!
//! - `model`: the HAR 1.2 document as serde types.
//! - `entry`: one capture record → one HAR entry; `body`, `query` and `cookies` map its parts.
//! - `read`: reading capture files and writing the HAR document.

mod body;
mod cookies;
mod entry;
#[cfg(test)]
mod fixtures;
mod model;
mod query;
mod read;

pub use entry::{to_har, Export, UNKNOWN_MIME_TYPE};
pub use model::{
    Cache, Content, Cookie, Creator, Entry, Har, Log, NameValue, Page, PostData, Request, Response,
    SidecarFields, Timings, HAR_VERSION,
};
pub use read::{
    export_files, read_capture, read_records, visit_capture, CaptureLines, ExportError,
    ExportSummary, ReadRecords, UnreadableLines,
};
