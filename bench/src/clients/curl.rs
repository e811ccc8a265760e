//! curl: the large download, straight from the origin, through a CONNECT tunnel (`--proxytunnel`) or
//! through SOCKS5; in cleartext, or over HTTPS trusting one CA (scenario 7). Downloads repeat until the
//! measurement's time is spent (at least one), and the figure is all bytes over all transfer time.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::Invalid;
use crate::install::Tools;
use crate::route::{origin_url, Route};
use crate::tls::SERVER_NAME;

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

/// Which of the origin's servers a download fetches from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    Http,
    /// Its HTTPS server, trusting only the CA in `ca_file`.
    Https {
        ca_file: &'a Path,
    },
}

/// The URL and the arguments that go with the scheme. Over HTTPS the URL names [`SERVER_NAME`] (the
/// SNI, and the name the certificate is checked against) and `--connect-to` sends the connection, or
/// the CONNECT request, to 127.0.0.1, so nothing has to resolve the name. HTTP/1.1 only, as the
/// origin's TLS server offers no other, so the protocol cannot differ between rows.
pub fn scheme_args(scheme: Scheme<'_>, origin_port: u16, path: &str) -> (String, Vec<String>) {
    match scheme {
        Scheme::Http => (format!("{}{path}", origin_url(origin_port)), Vec::new()),
        Scheme::Https { ca_file } => (
            format!("https://{SERVER_NAME}:{origin_port}{path}"),
            vec![
                "--cacert".into(),
                ca_file.display().to_string(),
                "--connect-to".into(),
                format!("{SERVER_NAME}:{origin_port}:127.0.0.1:{origin_port}"),
                "--http1.1".into(),
            ],
        ),
    }
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
    scheme: Scheme<'_>,
    origin_port: u16,
    path: &str,
    expected_bytes: u64,
    budget: Duration,
) -> anyhow::Result<Result<f64, Invalid>> {
    let (url, scheme_args) = scheme_args(scheme, origin_port, path);
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
            .args(&scheme_args)
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

    #[test]
    fn https_names_the_certificate_and_connects_to_loopback() {
        let (url, args) = scheme_args(
            Scheme::Https {
                ca_file: Path::new("/w/ca.crt"),
            },
            8443,
            "/large.bin",
        );
        assert_eq!(url, "https://origin.sidecar-bench.test:8443/large.bin");
        assert_eq!(
            args.join(" "),
            "--cacert /w/ca.crt --connect-to origin.sidecar-bench.test:8443:127.0.0.1:8443 --http1.1"
        );
        let (url, args) = scheme_args(Scheme::Http, 8080, "/large.bin");
        assert_eq!(url, "http://127.0.0.1:8080/large.bin");
        assert!(args.is_empty());
    }
}
