//! `/crashes`: impacts detected in the caller's devices' samples.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppState, ErrorBody, Result, extract::AuthUser};
use crate::{store::Crash, timestamp::serde_rfc3339};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_crashes))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrashView {
    id: i64,
    device_id: i64,
    session_id: Option<i64>,
    /// Time of the peak.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    ts: i64,
    /// `low`, `medium` or `high`.
    severity: String,
    /// Peak acceleration magnitude, m/s².
    peak_accel: f32,
    latitude: Option<f64>,
    longitude: Option<f64>,
    /// `auto`, `user` or `false_positive`.
    confirmed: String,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
}

impl From<Crash> for CrashView {
    fn from(crash: Crash) -> Self {
        CrashView {
            id: crash.id,
            device_id: crash.device_id,
            session_id: crash.session_id,
            ts: crash.ts,
            severity: crash.severity,
            peak_accel: crash.peak_accel,
            latitude: crash.latitude,
            longitude: crash.longitude,
            confirmed: crash.confirmed,
            created_at: crash.created_at,
        }
    }
}

/// Crash events of the caller's devices, newest first.
#[utoipa::path(get, path = "/crashes", tag = "crashes", security(("bearer" = [])),
    responses(
        (status = 200, description = "Crashes", body = [CrashView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
async fn list_crashes(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<CrashView>>> {
    let crashes = state.store.crashes_of(user.id).await?;
    Ok(axum::Json(
        crashes.into_iter().map(CrashView::from).collect(),
    ))
}
