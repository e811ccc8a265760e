//! Scenario 9 (issue #19): replay and mock at the speed of the tools they stand in for.
//!
//! - [`replay`]: `sidecar-proxy replay --rate max` of a capture of wrk's load, against wrk's own rate
//!   straight to nginx (the section's direct row) in the same round;
//! - [`mock`]: wrk cycling through 10,000 recorded requests, answered by a forward sidecar's `--mock`,
//!   against the same sidecar relaying them to nginx;
//! - [`recording`]: the sidecars both start for themselves each round: the recording one and the mock.

pub mod mock;
pub mod recording;
pub mod replay;
