//! `/sessions`: recording sessions of the caller, optionally bound to one device.

use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Error, ErrorBody, Result,
    extract::{AuthUser, Id, parse_json},
};
use crate::{
    store::{Session, StopOutcome},
    timestamp::{now_us, serde_rfc3339},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions, create_session))
        .routes(routes!(get_session, stop_session, delete_session))
}

const NOT_FOUND: Error = Error::NotFound("session not found");

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateSession {
    /// Bind the session to one of the caller's devices.
    device_id: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    id: i64,
    device_id: Option<i64>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    start_time: i64,
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    end_time: Option<i64>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
}

impl From<Session> for SessionView {
    fn from(session: Session) -> Self {
        SessionView {
            id: session.id,
            device_id: session.device_id,
            start_time: session.start_time,
            end_time: session.end_time,
            created_at: session.created_at,
        }
    }
}

/// Start a session now. The body is optional (the original app sends none).
#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body(content = Option<CreateSession>), security(("bearer" = [])),
    responses(
        (status = 201, description = "Started", body = SessionView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found`", body = ErrorBody),
        (status = 422, description = "Wrong field type", body = ErrorBody),
    ))]
async fn create_session(
    State(state): State<AppState>,
    user: AuthUser,
    body: Bytes,
) -> Result<impl IntoResponse> {
    let body: CreateSession = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSession::default()
    } else {
        parse_json(&body)?
    };
    if let Some(device_id) = body.device_id {
        state
            .store
            .device_of(user.id, device_id)
            .await?
            .ok_or(super::devices::NOT_FOUND)?;
    }
    let session = state
        .store
        .insert_session(user.id, body.device_id, now_us())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(SessionView::from(session))))
}

/// The caller's sessions, newest first.
#[utoipa::path(get, path = "/sessions", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "Sessions", body = [SessionView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
async fn list_sessions(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<SessionView>>> {
    let sessions = state.store.sessions_of(user.id).await?;
    Ok(axum::Json(
        sessions.into_iter().map(SessionView::from).collect(),
    ))
}

/// One of the caller's sessions.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", params(("id" = i64, Path, description = "Session id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`session not found`", body = ErrorBody),
        (status = 422, description = "Non-numeric id", body = ErrorBody),
    ))]
async fn get_session(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<axum::Json<SessionView>> {
    let session = state
        .store
        .session_of(user.id, id)
        .await?
        .ok_or(NOT_FOUND)?;
    Ok(axum::Json(session.into()))
}

/// Stop a session now (any body is ignored).
#[utoipa::path(patch, path = "/sessions/{id}", tag = "sessions", params(("id" = i64, Path, description = "Session id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Stopped", body = SessionView),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`session not found`", body = ErrorBody),
        (status = 409, description = "`session already stopped`", body = ErrorBody),
    ))]
async fn stop_session(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<axum::Json<SessionView>> {
    match state.store.stop_session(user.id, id, now_us()).await? {
        StopOutcome::Stopped(session) => Ok(axum::Json(session.into())),
        StopOutcome::AlreadyStopped => Err(Error::Conflict("session already stopped")),
        StopOutcome::NotFound => Err(NOT_FOUND),
    }
}

/// Delete a session; its samples are kept, unattributed.
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(("id" = i64, Path, description = "Session id")), security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`session not found`", body = ErrorBody),
    ))]
async fn delete_session(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<StatusCode> {
    if state.store.delete_session(user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(NOT_FOUND)
    }
}
