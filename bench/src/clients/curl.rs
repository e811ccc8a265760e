//! curl: the large download, straight from the origin, through a CONNECT tunnel (`--proxytunnel`) or
//! through SOCKS5. Downloads repeat until the measurement's time is spent (at least one), and the
//! figure is all bytes over all transfer time.

use std::time::{Duration, Instant};

use tokio::process::Command;

use super::Invalid;
use crate::install::Tools;
use crate::route::{origin_url, Route};

/// curl's `--write-out`: status, bytes, seconds.
const WRITE_OUT: &str = "%{http_code} %{size_download} %{time_total}\n";

/// The arguments that choose the path, for `route`.
pub fn route_args(route: Route) -> anyhow::Result<Vec<String>> {
    Ok(match route {
        // An http_proxy in the environment must not turn the direct row into a proxied one.
        Route::Direct => vec!["--noproxy".into(), "*".into()],
        Route::Connect { proxy_port } => vec![
            "--proxy".into(),
            format!("http://127.0.0.1:{proxy_port}"),
            "--proxytunnel".into(),
        ],
        Route::Socks5 { proxy_port } => vec!["--socks5".into(), format!("127.0.0.1:{proxy_port}")],
        Route::Reverse { .. } | Route::AbsoluteForm { .. } => {
            anyhow::bail!("the download scenario has no {route:?} row")
        }
    })
}

/// One transfer as `--write-out` reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub status: u16,
    pub bytes: u64,
    pub seconds: f64,
}

pub fn parse_write_out(line: &str) -> Option<Transfer> {
    let mut fields = line.split_whitespace();
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().ok()?;
    let seconds = fields.next()?.parse().ok()?;
    Some(Transfer {
        status,
        bytes,
        seconds,
    })
}

/// Downloads the origin's large file through `route` for about `budget`: bits per second.
pub async fn download(
    tools: &Tools,
    route: Route,
    origin_port: u16,
    path: &str,
    expected_bytes: u64,
    budget: Duration,
) -> anyhow::Result<Result<f64, Invalid>> {
    let url = format!("{}{path}", origin_url(origin_port));
    let started = Instant::now();
    let (mut bytes, mut seconds) = (0u64, 0f64);
    while bytes == 0 || started.elapsed() < budget {
        let mut command = Command::new(&tools.curl);
        command
            .args([
                "--silent",
                "--show-error",
                "--output",
                "/dev/null",
                "--write-out",
                WRITE_OUT,
            ])
            .args(route_args(route)?)
            .arg(&url);
        let output = super::output(command, budget + Duration::from_secs(120)).await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let transfer = match parse_write_out(&stdout) {
            Some(transfer) if output.status.success() => transfer,
            _ => {
                return Ok(Err(Invalid(format!(
                    "curl failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ))))
            }
        };
        if transfer.status != 200 || transfer.bytes != expected_bytes {
            return Ok(Err(Invalid(format!(
                "download answered {} with {} bytes, not 200 with {expected_bytes}",
                transfer.status, transfer.bytes
            ))));
        }
        bytes += transfer.bytes;
        seconds += transfer.seconds;
    }
    if seconds <= 0.0 {
        return Ok(Err(Invalid("curl reported no transfer time".to_owned())));
    }
    Ok(Ok(bytes as f64 * 8.0 / seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("200 268435456 0.123456\n", Some(Transfer { status: 200, bytes: 268_435_456, seconds: 0.123456 }))]
    #[case("000 0 0.000100", Some(Transfer { status: 0, bytes: 0, seconds: 0.0001 }))]
    #[case("curl: (7) Failed to connect", None)]
    #[case("", None)]
    fn write_out_is_parsed(#[case] line: &str, #[case] expected: Option<Transfer>) {
        assert_eq!(parse_write_out(line), expected);
    }

    #[rstest]
    #[case(Route::Direct, "--noproxy *")]
    #[case(Route::Connect { proxy_port: 3128 }, "--proxy http://127.0.0.1:3128 --proxytunnel")]
    #[case(Route::Socks5 { proxy_port: 1080 }, "--socks5 127.0.0.1:1080")]
    fn each_route_has_its_curl_flags(#[case] route: Route, #[case] expected: &str) {
        assert_eq!(route_args(route).unwrap().join(" "), expected);
    }
}
