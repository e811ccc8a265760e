//! `sidecar-proxy replay`: the inbound HTTP exchanges of a capture sent again to a target (a new build of
//! the app), each answer compared with the recorded one.
//!
//! - [`plan`]: which records are replayed, and the request each becomes.
//! - [`learned`]: fields that already differ between repeats of one request in the capture (noise).
//! - [`client`]: the connections to the target (http or https); `h1_link`: one worker's HTTP/1.1
//!   connection, driven in the worker's own task; `answer`: an answer read whole.
//! - [`pace`]: when each request starts (`--concurrency`, `--rate`, `--pace recorded`).
//! - [`report`]: the summary on stdout, `--report` (JSON) and `--junit` (JUnit XML).

mod answer;
pub mod client;
mod h1_link;
pub mod learned;
pub mod pace;
pub mod plan;
pub mod report;
mod run;

pub use run::{replay, Outcome, ReplayOptions, ReplayedExchange};
