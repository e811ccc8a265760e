//! `sidecar-proxy wait-before-stop`: waits a set time, then returns.
//!
//! The injector runs it as the classic sidecar's preStop hook (`sidecar.speedscale.com/pre-stop-wait`).
//! In the classic layout the kubelet signals every container of a deleted pod at once, so the sidecar
//! would start draining while the app still finishes its own requests and makes its last outbound calls.
//! The kubelet sends a container SIGTERM only once its preStop hook has returned: with this hook the
//! sidecar keeps serving as usual, ready, for that long before its drain begins. (A native sidecar needs
//! none: the kubelet stops it after the app's containers.)

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct WaitBeforeStopArgs {
    /// How long to wait (like 10s; at most 1h)
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_wait)]
    pub wait: Duration,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    crate::config::parse_shutdown_duration(text)
        .ok_or_else(|| "allowed values are durations from 0s to 1h, like 10s or 1m".to_owned())
}

impl WaitBeforeStopArgs {
    pub fn run(self) -> ExitCode {
        std::thread::sleep(self.wait);
        ExitCode::SUCCESS
    }
}
