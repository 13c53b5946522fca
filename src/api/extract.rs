//! Request extractors whose rejections are [`Error`]s, so that malformed input gets the
//! same JSON error shape as everything else: a JSON body that names the offending field,
//! numeric path ids, and the bearer access token.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{AppState, Error};
use crate::auth::Kind;

/// A JSON request body. Not JSON → 400; wrong or missing field → 422 naming the field;
/// over the body limit → 413.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(Json)
    }
}

/// Maps a failure to read the body (too large, connection broken) to an [`Error`].
pub fn body_error(rejection: BytesRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge("request body too large".into())
    } else {
        Error::BadRequest(rejection.body_text())
    }
}

/// Deserializes `bytes` as JSON with field-path aware errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() {
            let message = strip_position(&inner.to_string());
            if path == "." {
                Error::Unprocessable(message)
            } else {
                Error::Unprocessable(format!("{path}: {message}"))
            }
        } else {
            Error::BadRequest(format!("malformed JSON: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| Error::BadRequest(format!("malformed JSON: {err}")))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// A numeric id from the path (`/devices/{id}`); anything else → 422.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| Error::Unprocessable("path parameter `id` is missing".into()))?;
        raw.parse().map(Id).map_err(|_| {
            Error::Unprocessable(format!(
                "path parameter `id` must be an integer, got {raw:?}"
            ))
        })
    }
}

/// The bearer token of the request, if any. A malformed header counts as none.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The user a valid access token speaks for.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: i64,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer_token(parts).ok_or(Error::Unauthorized("missing bearer token"))?;
        let claims = state.tokens.verify(token, Kind::Access)?;
        Ok(AuthUser {
            id: claims.user_id()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        device_id: i64,
        ax: f32,
    }

    fn message(result: Result<Vec<Sample>, Error>) -> (u16, String) {
        let err = result.unwrap_err();
        let status = match err {
            Error::BadRequest(_) => 400,
            Error::Unprocessable(_) => 422,
            _ => 0,
        };
        (status, err.to_string())
    }

    #[test]
    fn syntax_errors_are_400_and_data_errors_name_the_field() {
        assert_eq!(message(parse_json(b"[{")).0, 400);
        assert_eq!(message(parse_json(b"[] trailing")).0, 400);
        assert_eq!(
            message(parse_json(
                br#"[{"device_id": 1, "ax": 1}, {"device_id": "x", "ax": 1}]"#
            )),
            (
                422,
                "[1].device_id: invalid type: string \"x\", expected i64".into()
            )
        );
        assert_eq!(
            message(parse_json(br#"[{"device_id": 1}]"#)),
            (422, "[0]: missing field `ax`".into())
        );
    }
}
