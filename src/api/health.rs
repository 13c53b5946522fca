//! Liveness and readiness probes, at the root and under `/api/v1`.

use axum::{extract::State, http::StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppState, Error, ErrorBody, Result};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "Alive", body = Status)))]
pub(super) async fn health() -> axum::Json<Status> {
    axum::Json(Status { status: "ok" })
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "`database unavailable`", body = ErrorBody),
    ))]
pub(super) async fn ready(
    State(state): State<AppState>,
) -> Result<(StatusCode, axum::Json<Status>)> {
    state.store.ping().await.map_err(|err| {
        tracing::warn!(error = %err, "readiness check failed");
        Error::Unavailable("database unavailable")
    })?;
    Ok((StatusCode::OK, axum::Json(Status { status: "ok" })))
}
