//! The management API's one error type and its mapping to HTTP statuses and RabbitMQ's JSON
//! error body `{"error": …, "reason": …}`.

use crate::broker::{Error, ReplyCode};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Self {
        Self { status, error, reason: reason.into() }
    }

    /// A route or object that does not exist (RabbitMQ's body for both).
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// No or wrong credentials.
    pub fn login_failed() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
    }

    /// Authenticated, but the user's tags or permissions do not allow this.
    pub fn not_authorised(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    /// A request body larger than the API reads ([`super::MAX_BODY`]).
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body larger than the limit of {} bytes", super::MAX_BODY),
        )
    }

    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", reason)
    }
}

/// A domain refusal: missing objects are 404 with the AMQP detail, access refusals 401, the
/// rest 400 with the detail as the reason (as the management plugin reports channel errors).
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e.code {
            ReplyCode::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", e.detail),
            ReplyCode::AccessRefused => Self::not_authorised(e.detail),
            ReplyCode::InternalError => Self::internal(e.detail),
            _ => Self::bad_request(e.detail),
        }
    }
}

impl Error {
    /// A refusal as the management plugin reports an AMQP error: 404 or 400 with the AMQP
    /// reply text (`NOT_FOUND - no queue 'q' in vhost '/'`) as the reason.
    pub fn into_api(self) -> ApiError {
        let status = if self.code == ReplyCode::NotFound { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
        ApiError::new(
            status,
            if status == StatusCode::NOT_FOUND { "not_found" } else { "bad_request" },
            self.reply_text(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "reason": self.reason });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.error == "not_authorized" {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        r
    }
}
