//! `Cookie` and `Set-Cookie` header values as HAR cookies, with HTTP dates turned into ISO 8601.

use super::model::Cookie;

/// A request's `Cookie: a=1; b=2`.
pub(super) fn parse_cookie_header(value: &str) -> Vec<Cookie> {
    value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            // A pair without `=` is a value with an empty name, as browsers read it.
            let (name, value) = pair.split_once('=').unwrap_or(("", pair));
            Cookie {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                ..Cookie::default()
            }
        })
        .collect()
}

/// A response's `Set-Cookie: id=7; Path=/; Domain=example.com; Expires=...; HttpOnly; Secure`.
pub(super) fn parse_set_cookie(value: &str) -> Option<Cookie> {
    let mut parts = value.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let mut cookie = Cookie {
        name: name.trim().to_owned(),
        value: value.trim().to_owned(),
        ..Cookie::default()
    };
    for attribute in parts {
        let (key, value) = attribute.split_once('=').unwrap_or((attribute, ""));
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "path" => cookie.path = Some(value.to_owned()),
            "domain" => cookie.domain = Some(value.to_owned()),
            "expires" => cookie.expires = http_date_to_iso8601(value),
            "httponly" => cookie.http_only = Some(true),
            "secure" => cookie.secure = Some(true),
            _ => {}
        }
    }
    Some(cookie)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the RFC 850 and asctime forms, and the
/// `06-Nov-1994` spelling cookies use) as ISO 8601; `None` when it is none of those.
fn http_date_to_iso8601(text: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for token in text.split([' ', '-', ',']).filter(|t| !t.is_empty()) {
        if token.contains(':') {
            let mut parts = token.split(':').map(|p| p.parse::<u32>().ok());
            let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
            if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
                return None;
            }
            time = Some((h, m, s));
        } else if let Ok(number) = token.parse::<u32>() {
            if day.is_none() {
                day = Some(number);
            } else if year.is_none() {
                year = Some(match (token.len(), number) {
                    (2, n) if n < 70 => 2000 + n,
                    (2, n) => 1900 + n,
                    (4, n) => n,
                    _ => return None,
                });
            } else {
                return None;
            }
        } else if let Some(index) = MONTHS.iter().position(|m| {
            token
                .get(..3)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(m))
        }) {
            // Weekday names never start like a month name.
            month = Some(index as u32 + 1);
        }
    }
    let (day, month, year, (h, m, s)) = (day?, month?, year?, time?);
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.000Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_become_iso_8601() {
        for (text, want) in [
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                Some("1994-11-06T08:49:37.000Z"),
            ),
            (
                "Sunday, 06-Nov-94 08:49:37 GMT",
                Some("1994-11-06T08:49:37.000Z"),
            ),
            ("Sun Nov  6 08:49:37 1994", Some("1994-11-06T08:49:37.000Z")),
            (
                "Wed, 21-Oct-2026 07:28:00 GMT",
                Some("2026-10-21T07:28:00.000Z"),
            ),
            ("tomorrow", None),
            ("Sun, 40 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ] {
            assert_eq!(http_date_to_iso8601(text).as_deref(), want, "{text}");
        }
    }
}
