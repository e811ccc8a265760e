//! The `Host` header rule of RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and a request
//! of any version carries at most one. A server must answer 400 otherwise, and for a proxy it matters more:
//! with two `Host` headers the record (and any routing on the way) may go by one while the app goes by the
//! other. HTTP/1.0 predates the header, so an HTTP/1.0 request without one is still served.
//!
//! A request to the forward proxy names its host in the absolute-form target, and RFC 9112 §3.2.2 has the
//! proxy replace any `Host` with that; a missing `Host` there is nothing to choose between, and clients
//! built on bare HTTP connection libraries (hyper's among them) leave it out, so it is served. Several are
//! still refused: a client that sends two cannot know which one counts.
//!
//! HTTP/2 names the authority in `:authority` and is left to the h2 layer. CONNECT is exempt: its target is
//! the request line's authority-form, and not every client sends `Host` with it.

use http::header::{HeaderMap, HOST};
use http::{Method, StatusCode, Version};

use super::framing::Refusal;

/// Where a request's host comes from, for the one case RFC 9112 lets go without a `Host` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostSource {
    /// The `Host` header (origin-form, a reverse proxy): an HTTP/1.1 request must have exactly one.
    Header,
    /// The absolute-form target (the forward proxy), which replaces any `Host`: none is fine, several not.
    Target,
}

/// Checks the request's `Host` headers as RFC 9112 §3.2 requires of an HTTP/1 server.
pub fn check_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    source: HostSource,
) -> Result<(), Refusal> {
    if *method == Method::CONNECT || !matches!(version, Version::HTTP_10 | Version::HTTP_11) {
        return Ok(());
    }
    check_count(version, headers.get_all(HOST).iter().count(), source)
}

/// The same check from the number of `Host` fields an HTTP/1 head carries, as parsed (the HTTP/1 engine's
/// heads, which never become a `HeaderMap`); CONNECT is the caller's to exempt.
pub fn check_count(version: Version, hosts: usize, source: HostSource) -> Result<(), Refusal> {
    let reason = match hosts {
        0 if version == Version::HTTP_11 && source == HostSource::Header => {
            "sidecar: an HTTP/1.1 request must have a Host header (RFC 9112 §3.2)".to_owned()
        }
        0 | 1 => return Ok(()),
        several => format!(
            "sidecar: the request has {several} Host headers; it may have only one (RFC 9112 §3.2)"
        ),
    };
    Err(Refusal {
        status: StatusCode::BAD_REQUEST,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(method: Method, version: Version, hosts: &[&'static str]) -> Result<(), String> {
        check_from(HostSource::Header, method, version, hosts)
    }

    fn check_from(
        source: HostSource,
        method: Method,
        version: Version,
        hosts: &[&'static str],
    ) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(HOST, HeaderValue::from_static(host));
        }
        check_request(&method, version, &headers, source).map_err(|refusal| {
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
            refusal.reason
        })
    }

    #[test]
    fn one_host_passes_and_http_1_0_may_have_none() {
        assert_eq!(check(Method::GET, Version::HTTP_11, &["app"]), Ok(()));
        assert_eq!(check(Method::GET, Version::HTTP_10, &["app"]), Ok(()));
        assert_eq!(check(Method::GET, Version::HTTP_10, &[]), Ok(()));
        // An empty value is what a client sends when the target has no authority (RFC 9112 §3.2).
        assert_eq!(check(Method::GET, Version::HTTP_11, &[""]), Ok(()));
    }

    #[test]
    fn none_on_http_1_1_or_several_on_any_version_is_400() {
        assert_eq!(
            check(Method::GET, Version::HTTP_11, &[]),
            Err("sidecar: an HTTP/1.1 request must have a Host header (RFC 9112 §3.2)".into())
        );
        for version in [Version::HTTP_10, Version::HTTP_11] {
            assert_eq!(
                check(Method::POST, version, &["a", "b"]),
                Err(
                    "sidecar: the request has 2 Host headers; it may have only one (RFC 9112 §3.2)"
                        .into()
                )
            );
            assert!(
                check(Method::GET, version, &["a", "a"]).is_err(),
                "equal values too"
            );
        }
    }

    #[test]
    fn an_absolute_form_target_may_go_without_host_but_not_with_two() {
        let forward = |hosts| check_from(HostSource::Target, Method::GET, Version::HTTP_11, hosts);
        assert_eq!(forward(&[]), Ok(()));
        assert_eq!(forward(&["a"]), Ok(()));
        assert!(forward(&["a", "b"]).is_err());
    }

    #[test]
    fn connect_and_http_2_are_not_checked_here() {
        assert_eq!(check(Method::CONNECT, Version::HTTP_11, &[]), Ok(()));
        assert_eq!(check(Method::GET, Version::HTTP_2, &[]), Ok(()));
    }
}
