//! The one place where an error becomes a status code and a JSON body.
//!
//! Every answer the gateway gives for itself has the shape
//! `{"error": "<code>", "detail": "<text>", "message": "<text>", "code": <status>}`: `detail` is what
//! FastAPI clients read, `message` and `code` what RAGFlow's SDK reads (the same text, and the HTTP
//! status as a number), `error` is the stable machine code. The mapping is one
//! exhaustive `match` with no catch-all arm, pinned by the tests below for every variant. Who caused
//! an error follows from its status: 4xx the client, 502 and 504 the upstream, 500 and 503 the
//! gateway (the requests metric counts by status class).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::routes::PathError;

/// Why a credential was refused. The reason goes to logs and metrics; the client only sees 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    TooLarge,
    BadAlgorithm,
    ForbiddenHeader,
    UnknownKey,
    BadSignature,
    BadClaims,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    Revoked,
    UnknownToken,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::TooLarge => "too_large",
            AuthFailure::BadAlgorithm => "bad_algorithm",
            AuthFailure::ForbiddenHeader => "forbidden_header",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::BadClaims => "bad_claims",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::Revoked => "revoked",
            AuthFailure::UnknownToken => "unknown_token",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            AuthFailure::Missing => "Not authenticated: send Authorization: Bearer <token>",
            AuthFailure::Expired => "Token has expired",
            AuthFailure::Malformed
            | AuthFailure::TooLarge
            | AuthFailure::BadAlgorithm
            | AuthFailure::ForbiddenHeader
            | AuthFailure::UnknownKey
            | AuthFailure::BadSignature
            | AuthFailure::BadClaims
            | AuthFailure::NotYetValid
            | AuthFailure::WrongIssuer
            | AuthFailure::WrongAudience
            | AuthFailure::Revoked
            | AuthFailure::UnknownToken => "Invalid token",
        }
    }
}

/// An error the gateway answers for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The request is malformed; the message names what is wrong (never a secret).
    InvalidRequest(&'static str),
    /// The path is ambiguous and was refused rather than guessed at.
    AmbiguousPath(PathError),
    /// A field of a JSON body is wrong; names the field.
    InvalidField {
        field: &'static str,
        message: &'static str,
    },
    /// A JSON body names a member twice; names the member.
    DuplicateMember(Box<str>),
    Unauthenticated(AuthFailure),
    /// Wrong username or password: one answer for both.
    BadCredentials,
    Forbidden(&'static str),
    NotFound,
    MethodNotAllowed,
    Conflict(&'static str),
    PayloadTooLarge,
    /// The client stopped sending its body.
    RequestTimeout,
    UnsupportedMediaType,
    TooManyRequests {
        retry_after: Duration,
    },
    UpstreamUnreachable,
    /// The upstream answered something the gateway will not relay (a 101 it did not ask for).
    BadUpstreamResponse,
    UpstreamTimeout,
    /// A dependency (the identity assertion, the hashing pool) cannot serve the request now.
    Unavailable(&'static str),
    /// The user and token store is down: one answer wherever it is needed.
    StoreUnavailable,
    Internal,
}

impl GatewayError {
    /// Status, machine code and client-facing detail.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            GatewayError::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m),
            GatewayError::AmbiguousPath(_) => (StatusCode::BAD_REQUEST, "invalid_request", "Ambiguous request path"),
            GatewayError::InvalidField { message, .. } => (StatusCode::BAD_REQUEST, "invalid_request", message),
            GatewayError::DuplicateMember(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "A JSON member appears more than once",
            ),
            GatewayError::Unauthenticated(f) => (StatusCode::UNAUTHORIZED, "invalid_token", f.detail()),
            GatewayError::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Incorrect username or password",
            ),
            GatewayError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            GatewayError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            GatewayError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            GatewayError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            GatewayError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body is too large",
            ),
            GatewayError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "The request body stopped arriving",
            ),
            GatewayError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send a JSON body with Content-Type: application/json",
            ),
            GatewayError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many attempts; retry later",
            ),
            GatewayError::UpstreamUnreachable => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "The upstream service is unreachable",
            ),
            GatewayError::BadUpstreamResponse => (
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "The upstream service gave an answer the gateway does not relay",
            ),
            GatewayError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "The upstream service did not answer in time",
            ),
            GatewayError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            GatewayError::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The account store is unavailable",
            ),
            GatewayError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The JSON response for this error.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let (status, code, detail) = self.parts();
        let mut body = serde_json::json!({ "error": code, "detail": detail });
        if let GatewayError::InvalidField { field, message } = self {
            body["detail"] = serde_json::Value::from(format!("{field} {message}"));
            body["field"] = serde_json::Value::from(*field);
        }
        if let GatewayError::DuplicateMember(name) = self {
            body["detail"] = serde_json::Value::from(format!("the member `{name}` appears more than once"));
            body["field"] = serde_json::Value::from(&**name);
        }
        // RAG clients read `message` and `code` (ragflow-sdk raises `KeyError('message')` without them).
        body["message"] = body["detail"].clone();
        body["code"] = serde_json::Value::from(status.as_u16());
        let mut resp = json_response(status, &body);
        let headers = resp.headers_mut();
        match self {
            GatewayError::Unauthenticated(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            GatewayError::TooManyRequests { retry_after } => {
                let secs = retry_after.as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            GatewayError::InvalidRequest(_)
            | GatewayError::AmbiguousPath(_)
            | GatewayError::InvalidField { .. }
            | GatewayError::DuplicateMember(_)
            | GatewayError::BadCredentials
            | GatewayError::Forbidden(_)
            | GatewayError::NotFound
            | GatewayError::MethodNotAllowed
            | GatewayError::Conflict(_)
            | GatewayError::PayloadTooLarge
            | GatewayError::RequestTimeout
            | GatewayError::UnsupportedMediaType
            | GatewayError::UpstreamUnreachable
            | GatewayError::BadUpstreamResponse
            | GatewayError::UpstreamTimeout
            | GatewayError::Unavailable(_)
            | GatewayError::StoreUnavailable
            | GatewayError::Internal => {}
        }
        resp
    }
}

/// A JSON response with `Cache-Control: no-store` (answers may carry tokens).
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_pinned() {
        let cases = [
            (GatewayError::InvalidRequest("x"), 400, "invalid_request"),
            (GatewayError::DuplicateMember("x".into()), 400, "invalid_request"),
            (
                GatewayError::AmbiguousPath(PathError::DotSegment),
                400,
                "invalid_request",
            ),
            (
                GatewayError::Unauthenticated(AuthFailure::Expired),
                401,
                "invalid_token",
            ),
            (GatewayError::BadCredentials, 401, "invalid_credentials"),
            (
                GatewayError::InvalidField {
                    field: "f",
                    message: "x",
                },
                400,
                "invalid_request",
            ),
            (GatewayError::Forbidden("x"), 403, "forbidden"),
            (GatewayError::NotFound, 404, "not_found"),
            (GatewayError::MethodNotAllowed, 405, "method_not_allowed"),
            (GatewayError::Conflict("x"), 409, "conflict"),
            (GatewayError::RequestTimeout, 408, "request_timeout"),
            (GatewayError::UnsupportedMediaType, 415, "unsupported_media_type"),
            (GatewayError::PayloadTooLarge, 413, "payload_too_large"),
            (
                GatewayError::TooManyRequests {
                    retry_after: Duration::from_secs(3),
                },
                429,
                "too_many_requests",
            ),
            (GatewayError::UpstreamUnreachable, 502, "bad_gateway"),
            (GatewayError::BadUpstreamResponse, 502, "bad_gateway"),
            (GatewayError::UpstreamTimeout, 504, "gateway_timeout"),
            (GatewayError::Unavailable("x"), 503, "unavailable"),
            (GatewayError::StoreUnavailable, 503, "unavailable"),
            (GatewayError::Internal, 500, "internal_error"),
        ];
        for (err, status, code) in &cases {
            let (s, c, _) = err.parts();
            assert_eq!((s.as_u16(), c), (*status, *code), "{err:?}");
        }
        let mut listed: Vec<usize> = cases.iter().map(|(e, _, _)| variant_index(e)).collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed, (0..VARIANTS).collect::<Vec<_>>(), "every variant is pinned");
    }

    /// How many variants `GatewayError` has.
    const VARIANTS: usize = 20;

    /// A number per variant. The match has no `_` arm, so a new variant does not compile until it is
    /// numbered here, and then `statuses_are_pinned` fails until it is pinned there.
    fn variant_index(e: &GatewayError) -> usize {
        match e {
            GatewayError::InvalidRequest(_) => 0,
            GatewayError::AmbiguousPath(_) => 1,
            GatewayError::InvalidField { .. } => 2,
            GatewayError::DuplicateMember(_) => 3,
            GatewayError::Unauthenticated(_) => 4,
            GatewayError::BadCredentials => 5,
            GatewayError::Forbidden(_) => 6,
            GatewayError::NotFound => 7,
            GatewayError::MethodNotAllowed => 8,
            GatewayError::Conflict(_) => 9,
            GatewayError::PayloadTooLarge => 10,
            GatewayError::RequestTimeout => 11,
            GatewayError::UnsupportedMediaType => 12,
            GatewayError::TooManyRequests { .. } => 13,
            GatewayError::UpstreamUnreachable => 14,
            GatewayError::BadUpstreamResponse => 15,
            GatewayError::UpstreamTimeout => 16,
            GatewayError::Unavailable(_) => 17,
            GatewayError::StoreUnavailable => 18,
            GatewayError::Internal => 19,
        }
    }

    async fn body_of(err: &GatewayError) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = err.to_response().into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_body_carries_error_detail_message_and_code() {
        let field = GatewayError::InvalidField {
            field: "username",
            message: "is too long",
        };
        for err in [
            GatewayError::Unauthenticated(AuthFailure::Missing),
            GatewayError::Forbidden("no"),
            GatewayError::NotFound,
            GatewayError::PayloadTooLarge,
            GatewayError::DuplicateMember("k".into()),
            field,
            GatewayError::Internal,
        ] {
            let body = body_of(&err).await;
            let (status, code, _) = err.parts();
            assert_eq!(body["error"], code, "{err:?}");
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{err:?}");
            assert_eq!(body["message"], body["detail"], "{err:?}");
            assert_eq!(body["code"], status.as_u16(), "{err:?}");
        }
    }

    #[test]
    fn a_store_outage_has_one_answer() {
        let (status, code, detail) = GatewayError::StoreUnavailable.parts();
        assert_eq!(
            (status.as_u16(), code, detail),
            (503, "unavailable", "The account store is unavailable")
        );
    }

    #[test]
    fn unauthenticated_carries_rfc6750_challenge() {
        let resp = GatewayError::Unauthenticated(AuthFailure::BadSignature).to_response();
        assert_eq!(
            resp.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }

    #[test]
    fn too_many_requests_carries_retry_after() {
        let resp = GatewayError::TooManyRequests {
            retry_after: Duration::from_secs(7),
        }
        .to_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
