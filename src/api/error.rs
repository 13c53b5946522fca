//! The one place where failures become HTTP responses: every error body is
//! `{"error": "..."}`; internal details are logged, never sent.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{auth, ingest::WriteError, store};

/// Body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for people and for clients that match on it.
    #[schema(example = "device not found")]
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the body is not JSON, or required values are missing (original API texts).
    #[error("{0}")]
    BadRequest(String),
    /// 401, with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 404: missing, or someone else's (never told apart).
    #[error("{0}")]
    NotFound(&'static str),
    /// 405
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409
    #[error("{0}")]
    Conflict(&'static str),
    /// 413
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: well-formed JSON with a wrong or missing field; the message names it.
    #[error("{0}")]
    Unprocessable(String),
    /// 429, with `Retry-After`.
    #[error("too many requests, retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// 503: a dependency is down; the client should retry.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A handler panicked (caught by the panic layer).
    #[error("handler panicked")]
    Panic,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn status_and_message(&self) -> (StatusCode, String) {
        use StatusCode as S;
        let client = |status: S| (status, self.to_string());
        match self {
            Error::BadRequest(_) => client(S::BAD_REQUEST),
            Error::Unauthorized(_) => client(S::UNAUTHORIZED),
            Error::NotFound(_) => client(S::NOT_FOUND),
            Error::MethodNotAllowed => client(S::METHOD_NOT_ALLOWED),
            Error::Conflict(_) => client(S::CONFLICT),
            Error::PayloadTooLarge(_) => client(S::PAYLOAD_TOO_LARGE),
            Error::Unprocessable(_) => client(S::UNPROCESSABLE_ENTITY),
            Error::TooManyRequests { .. } => client(S::TOO_MANY_REQUESTS),
            Error::Unavailable(_) => client(S::SERVICE_UNAVAILABLE),
            Error::Auth(auth::Error::Expired) => (S::UNAUTHORIZED, "token expired".into()),
            Error::Auth(auth::Error::InvalidToken) => (S::UNAUTHORIZED, "invalid token".into()),
            Error::Store(err) if err.is_transient() => {
                (S::SERVICE_UNAVAILABLE, "database unavailable".into())
            }
            Error::Write(WriteError::Unavailable | WriteError::Stopped) => {
                (S::SERVICE_UNAVAILABLE, "database unavailable".into())
            }
            Error::Write(WriteError::TooLarge(_)) => client(S::PAYLOAD_TOO_LARGE),
            Error::Store(_)
            | Error::Auth(_)
            | Error::Write(WriteError::Refused(_))
            | Error::Panic => (S::INTERNAL_SERVER_ERROR, "internal server error".into()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        if status.is_server_error() {
            tracing::error!(error = %self, detail = ?self, "request failed");
        }
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Error::TooManyRequests { retry_after } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}
