//! `/telemetry` (and the original's `/telemetries`): JSON ingest of samples. Rows go
//! through the shared writer; the answer comes after they are committed.

use std::collections::BTreeSet;

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Error, ErrorBody, Result,
    extract::{AuthUser, Json},
};
use crate::{
    ingest::{crash, writer::Count},
    store::TelemetryRow,
    timestamp::{now_us, parse_rfc3339},
};

/// Most samples one request may carry.
pub const MAX_SAMPLES: usize = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest))
        .routes(routes!(ingest_legacy))
}

/// One 6-axis sample. Acceleration in m/s², rotation rate in rad/s.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SampleIn {
    device_id: i64,
    /// Attribute to this session; without it, to the device's open session, if any.
    session_id: Option<i64>,
    /// Sample time, RFC 3339 (any offset), microsecond precision.
    #[schema(example = "2025-07-28T17:05:03.123Z")]
    ts: String,
    ax: f64,
    ay: f64,
    az: f64,
    gx: f64,
    gy: f64,
    gz: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Inserted {
    /// Samples newly stored; samples already stored for the same device and time are
    /// not counted.
    inserted: u64,
}

/// Ingest a batch of samples (at most 10 000).
#[utoipa::path(post, path = "/telemetry", tag = "telemetry", request_body = [SampleIn], security(("bearer" = [])),
    responses(
        (status = 201, description = "Committed", body = Inserted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found` / `session not found`: not the caller's", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Too many samples, bad time, non-finite value or wrong field", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    ))]
async fn ingest(
    state: State<AppState>,
    user: AuthUser,
    body: Json<Vec<SampleIn>>,
) -> Result<(StatusCode, axum::Json<Inserted>)> {
    store_samples(state, user, body).await
}

/// The original API's path for [`ingest`].
#[utoipa::path(post, path = "/telemetries", tag = "telemetry", request_body = [SampleIn], security(("bearer" = [])),
    responses(
        (status = 201, description = "Committed", body = Inserted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "Device or session not the caller's", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 422, description = "Invalid samples", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry", body = ErrorBody),
    ))]
async fn ingest_legacy(
    state: State<AppState>,
    user: AuthUser,
    body: Json<Vec<SampleIn>>,
) -> Result<(StatusCode, axum::Json<Inserted>)> {
    store_samples(state, user, body).await
}

async fn store_samples(
    State(state): State<AppState>,
    user: AuthUser,
    Json(samples): Json<Vec<SampleIn>>,
) -> Result<(StatusCode, axum::Json<Inserted>)> {
    if samples.len() > MAX_SAMPLES {
        return Err(Error::Unprocessable(format!(
            "at most {MAX_SAMPLES} samples per request, got {}",
            samples.len()
        )));
    }
    let mut rows = samples
        .iter()
        .enumerate()
        .map(|(i, s)| to_row(i, s))
        .collect::<Result<Vec<_>>>()?;

    let devices: Vec<i64> = rows
        .iter()
        .map(|r| r.device_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if state.store.owned_device_ids(user.id, &devices).await?.len() != devices.len() {
        return Err(super::devices::NOT_FOUND);
    }
    let sessions: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.session_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if state
        .store
        .owned_session_ids(user.id, &sessions)
        .await?
        .len()
        != sessions.len()
    {
        return Err(Error::NotFound("session not found"));
    }
    if rows.iter().any(|r| r.session_id.is_none()) {
        let open = state.store.open_sessions(user.id, &devices).await?;
        for row in rows.iter_mut().filter(|r| r.session_id.is_none()) {
            row.session_id = open.get(&row.device_id).copied();
        }
    }

    let crashes = crash::detect(&rows, now_us());
    let receipt = state.writer.submit(rows, crashes, Count::Exact).await?;
    let inserted = receipt.committed().await?;
    Ok((StatusCode::CREATED, axum::Json(Inserted { inserted })))
}

fn to_row(index: usize, sample: &SampleIn) -> Result<TelemetryRow> {
    let ts = parse_rfc3339(&sample.ts).ok_or_else(|| {
        Error::Unprocessable(format!(
            "[{index}].ts: not an RFC 3339 time: {:?}",
            sample.ts
        ))
    })?;
    let axis = |name: &str, value: f64| {
        let value = value as f32;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Error::Unprocessable(format!(
                "[{index}].{name}: must be a finite number"
            )))
        }
    };
    Ok(TelemetryRow {
        device_id: sample.device_id,
        ts,
        session_id: sample.session_id,
        accel: [
            axis("ax", sample.ax)?,
            axis("ay", sample.ay)?,
            axis("az", sample.az)?,
        ],
        gyro: [
            axis("gx", sample.gx)?,
            axis("gy", sample.gy)?,
            axis("gz", sample.gz)?,
        ],
    })
}
