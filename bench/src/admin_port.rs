//! A sidecar-proxy's admin port as the harness reads it: the status of /readyz, and /metrics as a list
//! of series. The benchmark's tls-out and NATS sink rows and the soak's sampler all scrape it this way.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::net::TcpStream;

use crate::http_client;

/// A scrape that takes longer than this is a sidecar in trouble, reported as such.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of the exposition text: `name{labels} value` (labels without their braces).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Series<'a> {
    pub name: &'a str,
    pub labels: &'a str,
    pub value: f64,
}

impl Series<'_> {
    /// The value of label `key`, if the series has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.split(',').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == key).then(|| value.trim().trim_matches('"'))
        })
    }
}

/// The series of an OpenMetrics text, comments skipped; an unreadable value is an error.
pub fn parse(text: &str) -> anyhow::Result<Vec<Series<'_>>> {
    let mut series = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // Label values never hold a space in the sidecar's metrics.
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = key.split_once('{').unwrap_or((key, ""));
        let value = value
            .trim()
            .parse()
            .with_context(|| format!("bad value in metrics line {line:?}"))?;
        series.push(Series {
            name,
            labels: labels.trim_end_matches('}'),
            value,
        });
    }
    Ok(series)
}

/// /metrics, as `read` makes it out of the exposition text.
pub async fn scrape<T>(
    admin: SocketAddr,
    read: impl FnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, get(admin, "/metrics"))
        .await
        .with_context(|| {
            format!("http://{admin}/metrics did not answer within {SCRAPE_TIMEOUT:?}")
        })??;
    if response.status != 200 {
        bail!("GET http://{admin}/metrics answered {}", response.status);
    }
    let text = std::str::from_utf8(&response.body)
        .with_context(|| format!("http://{admin}/metrics is not UTF-8"))?;
    read(text).with_context(|| format!("http://{admin}/metrics"))
}

/// The status of a GET on the admin port.
pub async fn get_status(admin: SocketAddr, path: &str) -> anyhow::Result<u16> {
    Ok(get(admin, path).await?.status)
}

/// One GET on a fresh connection, closed after.
async fn get(admin: SocketAddr, path: &str) -> anyhow::Result<http_client::Response> {
    let stream = TcpStream::connect(admin)
        .await
        .with_context(|| format!("cannot connect to the admin port {admin}"))?;
    let (response, _closed_on_drop) =
        http_client::get(stream, path, &admin.to_string(), false).await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_value_is_an_error() {
        assert!(parse("sidecar_runtime_tasks_alive many\n").is_err());
    }
}
