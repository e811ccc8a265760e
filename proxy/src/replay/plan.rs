//! What a replay sends: the capture's inbound HTTP exchanges that got a response, in the order they
//! started, each turned into a request for the target.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Uri};

use crate::capture::record::{Detail, HttpRequest, HttpResponse, Record};
use crate::capture::REDACTED;

/// One recorded exchange to send again.
#[derive(Clone, Debug)]
pub struct Planned {
    /// What names the record in reports: its `uid` when it has one, else its `id`.
    pub record_name: String,
    pub request: HttpRequest,
    pub response: HttpResponse,
    /// How long the recorded exchange took.
    pub duration_ms: f64,
    /// Milliseconds after the first planned exchange started (for `--pace recorded`).
    pub offset_ms: f64,
}

/// The records of `records` a replay sends, and how many it leaves out (and why).
pub struct Plan {
    pub exchanges: Vec<Planned>,
    /// Inbound HTTP exchanges left out because no response was recorded.
    pub without_response: usize,
    /// Inbound exchanges that switched protocols (websocket, h2c): what followed was not recorded.
    pub upgraded: usize,
}

pub fn plan(records: Vec<Record>) -> Plan {
    let mut without_response = 0;
    let mut upgraded = 0;
    let mut chosen: Vec<(Planned, Option<std::time::SystemTime>, u64)> = Vec::new();
    for record in records {
        if record.direction != "inbound" {
            continue;
        }
        let record_name = record.name();
        let Detail::Http(exchange) = record.detail else {
            continue;
        };
        if exchange.upgraded.is_some() {
            upgraded += 1;
            continue;
        }
        let Some(response) = exchange.response else {
            without_response += 1;
            continue;
        };
        let start = humantime::parse_rfc3339(&record.start).ok();
        let planned = Planned {
            record_name,
            request: exchange.request,
            response,
            duration_ms: record.duration_ms,
            offset_ms: 0.0,
        };
        chosen.push((planned, start, record.id));
    }
    // Records are written as exchanges end; replay sends them in the order they started.
    chosen.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)));
    let first = chosen.iter().find_map(|(_, start, _)| *start);
    let exchanges = chosen
        .into_iter()
        .map(|(planned, start, _)| {
            let offset_ms = match (first, start) {
                (Some(first), Some(start)) => start
                    .duration_since(first)
                    .map_or(0.0, |gap| gap.as_secs_f64() * 1000.0),
                _ => 0.0,
            };
            Planned {
                offset_ms,
                ..planned
            }
        })
        .collect();
    Plan {
        exchanges,
        without_response,
        upgraded,
    }
}

/// The path and query of a recorded absolute URL (`/` when it has none).
pub fn path_and_query(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|uri| uri.path_and_query().map(|pq| pq.as_str().to_owned()))
        .filter(|pq| !pq.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

/// Where replayed requests go: `http://host:port` or `https://host:port`, with an optional base path that
/// recorded paths are appended to.
#[derive(Clone, Debug)]
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
    pub base_path: String,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let allowed = "allowed: an http:// or https:// URL such as http://127.0.0.1:8080";
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("invalid --target {text:?}: {e}; {allowed}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return Err(format!("invalid --target {text:?}: {allowed}")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("invalid --target {text:?}: it names no host; {allowed}"))?;
        if uri.query().is_some() {
            return Err(format!(
                "invalid --target {text:?}: a target has no query (recorded queries are sent as recorded); {allowed}"
            ));
        }
        Ok(Target {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.scheme == Scheme::HTTPS {
                443
            } else {
                80
            })
    }

    /// The URL a recorded request is sent to.
    pub fn uri_for(&self, recorded_url: &str) -> Result<Uri, http::Error> {
        self.absolute(&path_and_query(recorded_url))
    }

    /// `path` (a recorded path and query) under the target, as an absolute URL.
    fn absolute(&self, path: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(self.path_under(path)?)
            .build()
    }

    /// `path` under the target's base path, as an HTTP/1.1 request line carries it (`host` names the
    /// target).
    fn origin_form(&self, path: &str) -> Result<Uri, http::Error> {
        Ok(Uri::from(self.path_under(path)?))
    }

    fn path_under(&self, path: &str) -> Result<PathAndQuery, http::Error> {
        if self.base_path.is_empty() {
            return Ok(PathAndQuery::try_from(path)?);
        }
        Ok(PathAndQuery::try_from(format!("{}{path}", self.base_path))?)
    }
}

/// A recorded request as the request sent to the target: its method, the recorded path and query
/// (`path`, from [`path_and_query`]) under the target, its headers except hop-by-hop ones, framing (the
/// body is sent whole, so its length is known) and values the capture redacted; `host` names the target.
/// HTTP/1.1 requests get an origin-form URI (the path), HTTP/2 ones an absolute URL.
pub fn request_for(
    planned: &Planned,
    path: &str,
    target: &Target,
) -> Result<http::Request<bytes::Bytes>, String> {
    let request = &planned.request;
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("recorded method {:?} is not an HTTP method", request.method))?;
    let h2 = request.version == "HTTP/2.0";
    let uri = if h2 {
        target.absolute(path)
    } else {
        target.origin_form(path)
    }
    .map_err(|e| format!("recorded URL {:?} cannot be sent: {e}", request.url))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    if h2 {
        // Sent as HTTP/2 again (h2c, or ALPN h2 to an https target): gRPC needs it.
        builder = builder.version(http::Version::HTTP_2);
    }
    for (name, value) in &request.headers {
        // `te: trailers` is how an HTTP/2 client (gRPC's) says it reads trailers; its only value there.
        let h2_te = h2 && name.eq_ignore_ascii_case("te") && value == "trailers";
        if value == REDACTED || !(replayed_header(name) || h2_te) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(name, value);
        }
    }
    if !h2 {
        // HTTP/2 names the target in `:authority`, from the URL.
        builder = builder.header(http::header::HOST, target.authority.as_str());
    }
    builder
        .body(request.body.base64.clone())
        .map_err(|e| format!("recorded request cannot be sent: {e}"))
}

/// Headers a replayed request does not carry over: hop-by-hop ones, and the framing and `host` it sets
/// itself.
const NOT_REPLAYED: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "expect",
];

fn replayed_header(name: &str) -> bool {
    !NOT_REPLAYED
        .iter()
        .any(|left_out| name.eq_ignore_ascii_case(left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_take_a_base_path_and_refuse_what_is_not_a_url() {
        let target = Target::parse("http://127.0.0.1:8080/v2/").unwrap();
        assert_eq!(
            target
                .uri_for("http://app.test/users?id=1")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/v2/users?id=1"
        );
        assert_eq!(Target::parse("https://example.test").unwrap().port(), 443);
        for bad in ["127.0.0.1:8080", "ftp://x", "http://x/?a=1", "http://"] {
            let error = Target::parse(bad).err().unwrap_or_else(|| panic!("{bad}"));
            assert!(
                error.contains("allowed: an http:// or https:// URL"),
                "{error}"
            );
        }
    }
}
