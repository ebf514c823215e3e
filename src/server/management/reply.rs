//! RabbitMQ's answers: JSON bodies, `{"error": ..., "reason": ...}` errors with its status
//! codes, 201 Created and 204 No Content.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Error;

/// An error answer.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: String,
}

/// What handlers return.
pub(super) type ApiResult = Result<Response, ApiError>;

impl ApiError {
    /// 401 `not_authorised` (RabbitMQ's spelling) with `reason`.
    pub(super) fn unauthorised(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            error: "not_authorised",
            reason: reason.into(),
        }
    }

    /// 401 `not_authorized` (this one spelled with a z, as RabbitMQ does): no or wrong
    /// credentials.
    pub(super) fn login_failed() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            error: "not_authorized",
            reason: "Login failed".into(),
        }
    }

    /// 404 `Object Not Found`.
    pub(super) fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: "Object Not Found",
            reason: "Not Found".into(),
        }
    }

    /// 400 `bad_request` with `reason`.
    pub(super) fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad_request",
            reason: reason.into(),
        }
    }
}

impl From<Error> for ApiError {
    /// A broker error as the management plugin reports it: 404 for what does not exist,
    /// 400 for refusals of the request (inequivalent arguments, reserved names, in use).
    fn from(error: Error) -> ApiError {
        match &error {
            Error::NotFound(_) => ApiError::not_found(),
            Error::AccessRefused(m) => ApiError::unauthorised(m.clone()),
            Error::PreconditionFailed(m)
            | Error::ResourceLocked(m)
            | Error::InvalidArgument(m)
            | Error::Unsupported(m) => ApiError::bad_request(m.clone()),
            other => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "internal_server_error",
                reason: other.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.error, "reason": self.reason})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}

/// 200 with a JSON body.
pub(super) fn json(value: impl serde::Serialize) -> ApiResult {
    Ok(Json(value).into_response())
}

/// 201 Created (`true`) or 204 No Content (an update).
pub(super) fn created(new: bool) -> ApiResult {
    Ok(if new {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// 204 No Content.
pub(super) fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A JSON request body; an empty one is `{}` (RabbitMQ's PUT of a vhost has none). Not
/// JSON: 400 `not_json`. Fields it does not know are ignored, as RabbitMQ ignores them.
pub(super) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("not_json"))?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The fallback: 404 as RabbitMQ's.
pub(super) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// A known path with another method: 405 with a JSON error.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error: "Method Not Allowed",
        reason: "Method Not Allowed".into(),
    }
}
