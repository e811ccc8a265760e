//! iperf3: bulk tcp throughput, straight to the origin's iperf3 server or through a tcp relay in front
//! of it (iperf3's control and data connections both go through the relay).

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::process::Command;

use super::Invalid;
use crate::install::Tools;

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    end: Option<End>,
}

#[derive(Deserialize)]
struct End {
    sum_received: Sum,
}

#[derive(Deserialize)]
struct Sum {
    bits_per_second: f64,
}

/// Received bits per second from `iperf3 --json` output.
pub fn parse_bits_per_second(json: &str) -> Result<f64, Invalid> {
    let report: Report = serde_json::from_str(json)
        .map_err(|error| Invalid(format!("iperf3 printed no JSON report: {error}")))?;
    if let Some(error) = report.error {
        return Err(Invalid(format!("iperf3: {error}")));
    }
    let bits = report
        .end
        .map(|end| end.sum_received.bits_per_second)
        .ok_or_else(|| Invalid("iperf3's report has no end.sum_received".to_owned()))?;
    if bits > 0.0 {
        Ok(bits)
    } else {
        Err(Invalid("iperf3 received nothing".to_owned()))
    }
}

/// A client run of `duration` against `port`: received bits per second.
pub async fn run(
    tools: &Tools,
    port: u16,
    duration: Duration,
) -> anyhow::Result<Result<f64, Invalid>> {
    let seconds = duration.as_secs().max(1).to_string();
    client(tools, port, &["--time", &seconds], duration).await
}

/// A 64 MiB test (tens of milliseconds), to prove a path relays iperf3 before it is measured; with
/// much less, iperf3's server sometimes reports nothing received.
pub async fn verify(tools: &Tools, port: u16) -> anyhow::Result<()> {
    client(tools, port, &["--bytes", "64M"], Duration::from_secs(5))
        .await?
        .map(|_| ())
        .map_err(anyhow::Error::from)
}

async fn client(
    tools: &Tools,
    port: u16,
    extra: &[&str],
    expected: Duration,
) -> anyhow::Result<Result<f64, Invalid>> {
    let mut command = Command::new(&tools.iperf3);
    command
        .args([
            "--client",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--json",
        ])
        .args(extra);
    let output = super::output(command, expected + Duration::from_secs(30))
        .await
        .context("iperf3 client")?;
    // iperf3 exits non-zero on failure but still prints its JSON with the reason; when that JSON has
    // none, its exit status and stderr are all there is to go on.
    Ok(
        parse_bits_per_second(&String::from_utf8_lossy(&output.stdout)).map_err(|invalid| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Invalid(format!(
                "{invalid} (iperf3 exited with {}{})",
                output.status,
                if stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", stderr.trim())
                }
            ))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(
        r#"{"start": {}, "intervals": [], "end": {"sum_sent": {"bits_per_second": 2e10}, "sum_received": {"bits_per_second": 1.9e10}}}"#,
        Ok(1.9e10)
    )]
    #[case(
        r#"{"start": {}, "error": "unable to connect to server: Connection refused"}"#,
        Err("iperf3: unable to connect to server: Connection refused")
    )]
    #[case(
        r#"{"end": {"sum_received": {"bits_per_second": 0}}}"#,
        Err("iperf3 received nothing")
    )]
    #[case(r#"{"start": {}}"#, Err("iperf3's report has no end.sum_received"))]
    #[case(
        "iperf3: error",
        Err("iperf3 printed no JSON report: expected value at line 1 column 1")
    )]
    fn received_bits_per_second_or_why_not(
        #[case] json: &str,
        #[case] expected: Result<f64, &str>,
    ) {
        assert_eq!(
            parse_bits_per_second(json),
            expected.map_err(|reason| Invalid(reason.to_owned()))
        );
    }
}
