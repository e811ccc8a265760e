//! The parts of the differential capture test (`tests/capture_differential.rs`) that are not the corpus:
//! HTTP/1 on the wire, and the origins.

pub mod origin;
pub mod wire;
