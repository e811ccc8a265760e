//! The conformance suite: the client settings docs/language-configuration.md gives, proven with the real
//! clients users run (curl, Go, Python, Node, Java), each in a container sharing a pod network namespace
//! with the sidecar, in every mode of the spec. See docs/conformance.md.
#![forbid(unsafe_code)]

pub mod cell;
pub mod clients;
pub mod expectations;
pub mod images;
pub mod injected;
mod mock_answers;
pub mod modes;
pub mod pki;
pub mod planned;
pub mod pod;
mod recorded;
pub mod report;
pub mod results;
pub mod tls_out;
pub mod upstream;
pub mod workspace;
