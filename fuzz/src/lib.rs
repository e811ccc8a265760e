//! Fuzz targets for everything the sidecar and its injector parse from outside (docs/fuzzing.md).
//!
//! Each target is one `pub fn name(data: &[u8])` that panics on a finding: a panic or a hang in the code
//! under test, or a broken promise that the target checks. The same functions run two ways:
//!
//! - under libFuzzer: `cargo-fuzz/fuzz_targets/<name>.rs` is a one-line wrapper (see
//!   `scripts/fuzz.sh`);
//! - as regression tests: `tests/corpus.rs` runs every file of `corpus/<name>/` through its target under
//!   plain `cargo test`, so seeds and every crash ever found stay fixed.
//!
//! | target               | input                                                   | code under test                         |
//! |----------------------|---------------------------------------------------------|-----------------------------------------|
//! | `socks_handshake`    | a scripted SOCKS4/4a/5 client ([`scripted`])             | `socks::accept`, grant, refuse           |
//! | `http_forward`       | a scripted HTTP/1 client ([`scripted`])                  | `http::connection::serve`, forward path  |
//! | `transparent_detect` | a scripted client on a redirected connection             | `detect` (sniffing, TLS SNI)             |
//! | `config_flags`       | a command line, NUL-separated                            | `cli::Invocation`, config validation     |
//! | `annotations_file`   | a downward-API annotations file                          | `config::parse_annotations_file`         |
//! | `ignore_ports`       | a port list                                              | `config::PortList`, iptables rules       |
//! | `admission_review`   | a webhook request body                                   | `review::review`                         |
//! | `admission_pod`      | a pod as annotation lines                                | `review::admit`, the patch               |
//! | `capture_record`     | one record's fields, NUL-separated                       | record JSON, HAR export                  |
//! | `har_export`         | a capture file                                           | `har::read_capture`, `har::to_har`       |
//! | `capture_tap`        | both peers' bytes, interleaved in chunks                 | `tap::HttpTap`, records it builds        |
#![forbid(unsafe_code)]

mod admission;
mod capture;
mod config;
mod detect;
mod http_forward;
pub mod scripted;
mod socks;
mod tap;

pub use admission::{admission_pod, admission_review};
pub use capture::{capture_record, har_export, record_from_input};
pub use config::{annotations_file, config_flags, ignore_ports};
pub use detect::transparent_detect;
pub use http_forward::http_forward;
pub use socks::socks_handshake;
pub use tap::capture_tap;

/// A fuzz target: takes any bytes, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus tests and anything else that runs them all.
pub const TARGETS: [(&str, Target); 11] = [
    ("socks_handshake", socks_handshake),
    ("http_forward", http_forward),
    ("transparent_detect", transparent_detect),
    ("config_flags", config_flags),
    ("annotations_file", annotations_file),
    ("ignore_ports", ignore_ports),
    ("admission_review", admission_review),
    ("admission_pod", admission_pod),
    ("capture_record", capture_record),
    ("har_export", har_export),
    ("capture_tap", capture_tap),
];
