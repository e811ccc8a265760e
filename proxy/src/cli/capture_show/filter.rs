//! Which records `capture show` and `capture tail` print: `--direction`, `--host`, `--status`, `--grep`,
//! all of them when several are given.

use crate::capture::record::{Detail, Record};

use super::body_view::decoded_body;

/// A status to match: one code (`404`) or a class (`5xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Code(u16),
    /// The first digit: `5` for `5xx`.
    Class(u16),
}

impl StatusFilter {
    /// `404` or `5xx`; the message says what is allowed.
    pub fn parse(text: &str) -> Result<StatusFilter, String> {
        let allowed = "allowed: a status code like 404, or a class like 5xx";
        let lower = text.to_ascii_lowercase();
        if let Some(digit) = lower.strip_suffix("xx") {
            return match digit.parse::<u16>() {
                Ok(class @ 1..=5) if digit.len() == 1 => Ok(StatusFilter::Class(class)),
                _ => Err(allowed.into()),
            };
        }
        match text.parse::<u16>() {
            Ok(code @ 100..=999) => Ok(StatusFilter::Code(code)),
            _ => Err(allowed.into()),
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusFilter::Code(code) => status == code,
            StatusFilter::Class(class) => status / 100 == class,
        }
    }
}

/// The filters given on the command line; an empty filter matches every record.
#[derive(Clone, Debug, Default)]
pub struct RecordFilter {
    pub direction: Option<String>,
    /// Compared without regard to case, and without a port.
    pub host: Option<String>,
    pub status: Option<StatusFilter>,
    /// Looked for in the URL, the target, header names and values, the error and the bodies (decoded).
    pub grep: Option<String>,
    /// The `uid` of the inbound request whose outbound calls are wanted.
    pub caused_by: Option<String>,
}

impl RecordFilter {
    pub fn matches(&self, record: &Record) -> bool {
        if self
            .direction
            .as_ref()
            .is_some_and(|direction| *direction != record.direction)
        {
            return false;
        }
        if let Some(host) = &self.host {
            if !hosts_of(record).any(|candidate| candidate.eq_ignore_ascii_case(host)) {
                return false;
            }
        }
        if let Some(status) = self.status {
            let seen = match &record.detail {
                Detail::Http(exchange) => exchange.response.as_ref().map(|r| r.status),
                Detail::Stream(_) => None,
            };
            if !seen.is_some_and(|seen| status.matches(seen)) {
                return false;
            }
        }
        if let Some(text) = &self.grep {
            if !contains_text(record, text) {
                return false;
            }
        }
        if let Some(cause) = &self.caused_by {
            if record.caused_by.as_ref() != Some(cause) {
                return false;
            }
        }
        true
    }
}

/// The host names a record is about: its target, where it was delivered, the URL's host, the TLS name.
fn hosts_of(record: &Record) -> impl Iterator<Item = &str> {
    let url_host = match &record.detail {
        Detail::Http(exchange) => Some(host_of_url(&exchange.request.url)),
        Detail::Stream(stream) => stream.sni.as_deref(),
    };
    let sni = record.tls.as_ref().and_then(|tls| tls.sni.as_deref());
    [
        Some(host_of_authority(&record.target)),
        record.delivered_to.as_deref().map(host_of_authority),
        url_host,
        sni,
    ]
    .into_iter()
    .flatten()
}

fn host_of_url(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host_of_authority(authority)
}

/// `host:port`, `[v6]:port` or a bare host, without the port and brackets.
fn host_of_authority(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn contains_text(record: &Record, text: &str) -> bool {
    let in_fields = |fields: &[(String, String)]| {
        fields
            .iter()
            .any(|(name, value)| name.contains(text) || value.contains(text))
    };
    let in_body = |body, headers| decoded_body(body, headers).text_contains(text);
    if record.target.contains(text) {
        return true;
    }
    match &record.detail {
        Detail::Http(exchange) => {
            let request = &exchange.request;
            if request.url.contains(text)
                || in_fields(&request.headers)
                || in_fields(&request.trailers)
                || in_body(&request.body, &request.headers)
                || exchange.error.as_ref().is_some_and(|e| e.contains(text))
            {
                return true;
            }
            exchange.response.as_ref().is_some_and(|response| {
                in_fields(&response.headers)
                    || in_fields(&response.trailers)
                    || in_body(&response.body, &response.headers)
            })
        }
        Detail::Stream(stream) => {
            stream.sni.as_ref().is_some_and(|sni| sni.contains(text))
                || stream.error.as_ref().is_some_and(|e| e.contains(text))
                || stream.payload.as_ref().is_some_and(|payload| {
                    in_body(&payload.client_to_target, &[])
                        || in_body(&payload.target_to_client, &[])
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes() {
        assert_eq!(StatusFilter::parse("404"), Ok(StatusFilter::Code(404)));
        assert_eq!(StatusFilter::parse("5xx"), Ok(StatusFilter::Class(5)));
        assert_eq!(StatusFilter::parse("2XX"), Ok(StatusFilter::Class(2)));
        for bad in ["", "42", "6xx", "xx", "50x", "abc", "1000"] {
            assert!(StatusFilter::parse(bad).is_err(), "{bad}");
        }
        assert!(StatusFilter::Class(5).matches(503));
        assert!(!StatusFilter::Class(5).matches(404));
    }

    #[test]
    fn hosts_without_ports() {
        assert_eq!(host_of_url("http://api.test:8080/x?y"), "api.test");
        assert_eq!(host_of_url("https://u:p@[::1]:443/"), "::1");
        assert_eq!(host_of_authority("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(host_of_authority("api.test"), "api.test");
    }
}
