//! The HAR 1.2 document as serde types: the JSON shape only, no knowledge of capture records.
//!
//! Field names follow the specification (camelCase via serde); custom fields start with an underscore.

use serde::Serialize;

/// `log.version`.
pub const HAR_VERSION: &str = "1.2";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Har {
    pub log: Log,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Log {
    pub version: String,
    pub creator: Creator,
    /// Always empty (the sidecar sees no pages), but present: Chrome's and Firefox's importers read it
    /// unconditionally.
    pub pages: Vec<Page>,
    pub entries: Vec<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Creator {
    pub name: String,
    pub version: String,
}

/// A page (`log.pages`); none are written, the type only gives the array its element.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub started_date_time: String,
    pub id: String,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub started_date_time: String,
    /// Milliseconds: the sum of the non-negative `timings`.
    pub time: f64,
    pub request: Request,
    pub response: Response,
    pub cache: Cache,
    pub timings: Timings,
    #[serde(rename = "serverIPAddress", skip_serializing_if = "Option::is_none")]
    pub server_ip_address: Option<String>,
    /// The capture record's connection id: entries from one keep-alive connection share it.
    pub connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(rename = "_sidecar")]
    pub sidecar: SidecarFields,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub url: String,
    pub http_version: String,
    pub cookies: Vec<Cookie>,
    pub headers: Vec<NameValue>,
    pub query_string: Vec<NameValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    pub headers_size: i64,
    pub body_size: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: u16,
    pub status_text: String,
    pub http_version: String,
    pub cookies: Vec<Cookie>,
    pub headers: Vec<NameValue>,
    pub content: Content,
    #[serde(rename = "redirectURL")]
    pub redirect_url: String,
    pub headers_size: i64,
    pub body_size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Why the exchange failed (Chrome writes the same field for failed requests).
    #[serde(rename = "_error", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A header or a query-string parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    pub mime_type: String,
    /// Only for `application/x-www-form-urlencoded` bodies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<NameValue>,
    pub text: String,
    /// HAR 1.2 has no encoding for request bodies; `base64` here means `text` is base64, as in `content`.
    #[serde(rename = "_encoding", skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub size: i64,
    pub mime_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Nothing is known about caching: the object is present (HAR requires it) and empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cache {}

/// Milliseconds; -1 where the phase does not apply or was not measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timings {
    pub blocked: f64,
    pub dns: f64,
    pub connect: f64,
    pub send: f64,
    pub wait: f64,
    pub receive: f64,
    pub ssl: f64,
}

/// What the capture record knows that HAR has no field for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SidecarFields {
    pub id: u64,
    pub direction: String,
    pub proxy_type: String,
    pub protocol: String,
    pub transport: String,
    pub client: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
