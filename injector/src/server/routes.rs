//! The webhook's routes: `POST /mutate` (an AdmissionReview in, its answer out), `GET /healthz`, and the
//! error answers for everything else. The connection lifecycle around them is in [`super`].

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use serde_json::Value;
use tracing::{debug, info, warn};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::containers::SidecarOptions;
use crate::review::review;

use super::auto_layout::CurrentLayout;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// What every request needs from the server's settings.
pub(super) struct State {
    pub(super) sidecar: SidecarOptions,
    /// `native-sidecar: auto`'s layout as of this admission.
    pub(super) layout: CurrentLayout,
    pub(super) body_limit: usize,
}

pub(super) async fn respond(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let allowed = match path {
        "/mutate" => "POST",
        "/healthz" => "GET, HEAD",
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let method = request.method();
    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        // hyper sends no body in answer to HEAD.
        return plain(StatusCode::OK, "ok");
    }
    if path != "/mutate" || method != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    mutate(request, state).await
}

async fn mutate(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if !is_json(&request) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /mutate takes an AdmissionReview as Content-Type: application/json\n",
        );
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.body_limit as u64) {
        return too_large(state.body_limit);
    }
    let body = match Limited::new(request.into_body(), state.body_limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(state.body_limit),
        Err(e) => {
            debug!(error = %e, "cannot read the request body");
            return plain(StatusCode::BAD_REQUEST, "cannot read the request body\n");
        }
    };

    let answer = match state.layout.get() {
        Some(auto_layout) => review(
            &body,
            &SidecarOptions {
                auto_layout,
                ..state.sidecar.clone()
            },
        ),
        None => review(&body, &state.sidecar),
    };
    log_admission(&body, &answer);
    // Every request the API server sends has a uid; an answer without one means no request could be read.
    let unreadable = answer
        .response
        .as_ref()
        .is_none_or(|response| response.uid.is_empty());
    let status = if unreadable {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    match wire_json(&answer) {
        Ok(json) => with_body(status, JSON, json.into()),
        Err(e) => {
            warn!(error = %e, "cannot encode the AdmissionReview answer");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the answer\n",
            )
        }
    }
}

/// The AdmissionReview as the API server reads it. `patch` is a Go `[]byte`, which the API's JSON carries as
/// a base64 string; kube's type serializes its `Vec<u8>` as an array of numbers instead (kube-rs issue
/// #1781), so the patch is re-encoded here.
pub fn wire_json(answer: &AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    let mut json = serde_json::to_value(answer)?;
    let patch = answer
        .response
        .as_ref()
        .and_then(|response| response.patch.as_deref());
    if let (Some(patch), Some(response)) = (patch, json.get_mut("response")) {
        response["patch"] = Value::String(BASE64.encode(patch));
    }
    serde_json::to_vec(&json)
}

fn is_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(JSON))
}

/// One line per admission, naming the pod: the request fields are read beside the full parse in [`review`].
fn log_admission(body: &[u8], answer: &AdmissionReview<DynamicObject>) {
    let Some(response) = &answer.response else {
        return;
    };
    if response.uid.is_empty() {
        warn!(error = %response.result.message, "unreadable admission request");
        return;
    }
    let review: Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |pointer: &str| {
        review
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let uid = &response.uid;
    let namespace = field("/request/namespace");
    // A pod created by a controller has no name yet at admission, only its generateName prefix.
    let name = match field("/request/name") {
        "" => field("/request/object/metadata/name"),
        name => name,
    };
    let generate_name = field("/request/object/metadata/generateName");
    if !response.allowed {
        info!(%uid, %namespace, %name, %generate_name, decision = "denied", reason = %response.result.message, "admission");
    } else if response.patch.is_some() {
        info!(%uid, %namespace, %name, %generate_name, decision = "patched", "admission");
        // A controller's pods never show their warnings to a person: the injector's log does.
        for warning in response.warnings.iter().flatten() {
            warn!(%uid, %namespace, %name, %generate_name, %warning, "admission warning");
        }
    } else {
        info!(%uid, %namespace, %name, %generate_name, decision = "unchanged", "admission");
    }
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    with_body(
        StatusCode::PAYLOAD_TOO_LARGE,
        TEXT_PLAIN,
        format!("the AdmissionReview is larger than {limit} bytes\n").into(),
    )
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_body(status, TEXT_PLAIN, Bytes::from_static(body.as_bytes()))
}

fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}
