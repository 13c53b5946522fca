//! `/devices`: pairing (with MQTT credentials), listing, renaming, unpairing sensors and
//! rotating their credentials. A device is visible
//! only to the user it is paired to; for anyone else it does not exist (404).

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Error, ErrorBody, Result,
    extract::{AuthUser, Id, Json},
};
use crate::{
    store::{self, Device, DeviceUpdate},
    timestamp::{now_us, serde_rfc3339},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices, create_device))
        .routes(routes!(get_device, update_device, delete_device))
        .routes(routes!(rotate_token))
}

pub(super) const NOT_FOUND: Error = Error::NotFound("device not found");

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateDevice {
    /// The sensor's 16-character hexadecimal hardware id (case-insensitive).
    #[schema(example = "a1b2c3d4e5f60718")]
    hardware_id: String,
    #[schema(example = "Left wrist")]
    alias: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateDevice {
    alias: Option<String>,
    /// `online` or `offline` (`active`, the original's name, means `online`).
    #[schema(example = "offline")]
    status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    id: i64,
    hardware_id: String,
    alias: String,
    /// Firmware version, as last reported by the device.
    version: Option<String>,
    /// `onboarding` until first seen, then `online` or `offline`.
    #[schema(example = "onboarding")]
    status: String,
    /// Battery charge in percent, as last reported.
    battery_level: Option<i64>,
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_seen_at: Option<i64>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
}

impl From<Device> for DeviceView {
    fn from(device: Device) -> Self {
        DeviceView {
            id: device.id,
            hardware_id: device.hardware_id,
            alias: device.alias,
            version: device.version,
            status: device.status,
            battery_level: device.battery_level,
            last_seen_at: device.last_seen_at,
            created_at: device.created_at,
        }
    }
}

/// What a sensor needs to connect to the broker. `password` is a device JWT: shown when
/// issued (pairing, rotation), never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct MqttCredentials {
    #[schema(example = "dev-42")]
    client_id: String,
    #[schema(example = "42")]
    username: String,
    password: String,
    topics: MqttTopics,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MqttTopics {
    /// The device publishes telemetry batches here.
    #[schema(example = "velt/devices/42/telemetry")]
    telemetry: String,
    /// The device publishes its status (battery, firmware) here.
    status: String,
    /// The device subscribes: velt's acknowledgements of stored batches.
    ack: String,
    /// The device subscribes: commands from velt.
    cmd: String,
}

/// A freshly paired device with its MQTT credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct PairedDevice {
    #[serde(flatten)]
    device: DeviceView,
    mqtt: MqttCredentials,
}

/// New MQTT credentials of a device.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedCredentials {
    mqtt: MqttCredentials,
}

fn credentials(
    state: &AppState,
    device_id: i64,
    owner: i64,
    token_version: i64,
) -> Result<MqttCredentials> {
    use velt_proto::topics::{Channel, topic};
    let password = state
        .tokens
        .issue_device(device_id, owner, token_version)?
        .token;
    let id = device_id as u64;
    Ok(MqttCredentials {
        client_id: format!("dev-{device_id}"),
        username: device_id.to_string(),
        password,
        topics: MqttTopics {
            telemetry: topic(id, Channel::Telemetry),
            status: topic(id, Channel::Status),
            ack: topic(id, Channel::Ack),
            cmd: topic(id, Channel::Cmd),
        },
    })
}

fn parse_hardware_id(raw: &str) -> Result<String> {
    let id = raw.trim().to_ascii_lowercase();
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(Error::Unprocessable(
            "hardware_id: must be 16 hexadecimal characters".into(),
        ))
    }
}

fn parse_alias(raw: &str) -> Result<&str> {
    let alias = raw.trim();
    match alias.chars().count() {
        0 => Err(Error::Unprocessable("alias: must not be empty".into())),
        1..=64 => Ok(alias),
        _ => Err(Error::Unprocessable("alias: at most 64 characters".into())),
    }
}

fn parse_status(raw: &str) -> Result<&'static str> {
    match raw {
        "online" | "active" => Ok("online"),
        "offline" => Ok("offline"),
        _ => Err(Error::Unprocessable(
            "status: must be `online` or `offline`".into(),
        )),
    }
}

/// Pair a sensor with the caller's account; the answer carries its MQTT credentials.
#[utoipa::path(post, path = "/devices", tag = "devices", request_body = CreateDevice, security(("bearer" = [])),
    responses(
        (status = 201, description = "Paired", body = PairedDevice),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 409, description = "`device already paired` (to any account)", body = ErrorBody),
        (status = 422, description = "Invalid hardware_id or alias", body = ErrorBody),
    ))]
async fn create_device(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CreateDevice>,
) -> Result<impl IntoResponse> {
    let hardware_id = parse_hardware_id(&body.hardware_id)?;
    let alias = parse_alias(&body.alias)?;
    let device = match state
        .store
        .insert_device(user.id, &hardware_id, alias, now_us())
        .await
    {
        Err(store::Error::Conflict) => return Err(Error::Conflict("device already paired")),
        other => other?,
    };
    let mqtt = credentials(&state, device.id, user.id, device.token_version)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(PairedDevice {
            device: device.into(),
            mqtt,
        }),
    ))
}

/// The caller's devices.
#[utoipa::path(get, path = "/devices", tag = "devices", security(("bearer" = [])),
    responses(
        (status = 200, description = "Devices, oldest pairing first", body = [DeviceView]),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
async fn list_devices(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<axum::Json<Vec<DeviceView>>> {
    let devices = state.store.devices_of(user.id).await?;
    Ok(axum::Json(
        devices.into_iter().map(DeviceView::from).collect(),
    ))
}

/// One of the caller's devices.
#[utoipa::path(get, path = "/devices/{id}", tag = "devices", params(("id" = i64, Path, description = "Device id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The device", body = DeviceView),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found` (or not the caller's)", body = ErrorBody),
        (status = 422, description = "Non-numeric id", body = ErrorBody),
    ))]
async fn get_device(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<axum::Json<DeviceView>> {
    let device = state.store.device_of(user.id, id).await?.ok_or(NOT_FOUND)?;
    Ok(axum::Json(device.into()))
}

/// Rename a device or set its status.
#[utoipa::path(patch, path = "/devices/{id}", tag = "devices", params(("id" = i64, Path, description = "Device id")),
    request_body = UpdateDevice, security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated device", body = DeviceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found`", body = ErrorBody),
        (status = 422, description = "Invalid alias or status", body = ErrorBody),
    ))]
async fn update_device(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
    Json(body): Json<UpdateDevice>,
) -> Result<axum::Json<DeviceView>> {
    let update = DeviceUpdate {
        alias: body.alias.as_deref().map(parse_alias).transpose()?,
        status: body.status.as_deref().map(parse_status).transpose()?,
    };
    let device = state
        .store
        .update_device(user.id, id, &update)
        .await?
        .ok_or(NOT_FOUND)?;
    Ok(axum::Json(device.into()))
}

/// Unpair a device: its samples and crashes are deleted, its sessions kept.
#[utoipa::path(delete, path = "/devices/{id}", tag = "devices", params(("id" = i64, Path, description = "Device id")), security(("bearer" = [])),
    responses(
        (status = 204, description = "Unpaired"),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found`", body = ErrorBody),
    ))]
async fn delete_device(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<StatusCode> {
    if !state.store.delete_device(user.id, id).await? {
        return Err(NOT_FOUND);
    }
    state
        .live
        .publish(id, || crate::ingest::live::LiveEvent::Unpaired);
    state.broker.disconnect_device(id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue new MQTT credentials: the old password stops working and the device's live
/// connection is dropped at once.
#[utoipa::path(post, path = "/devices/{id}/token", tag = "devices", params(("id" = i64, Path, description = "Device id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "New credentials", body = RotatedCredentials),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found`", body = ErrorBody),
    ))]
async fn rotate_token(
    State(state): State<AppState>,
    user: AuthUser,
    Id(id): Id,
) -> Result<axum::Json<RotatedCredentials>> {
    let version = state
        .store
        .bump_token_version(user.id, id)
        .await?
        .ok_or(NOT_FOUND)?;
    state.broker.disconnect_device(id).await;
    let mqtt = credentials(&state, id, user.id, version)?;
    Ok(axum::Json(RotatedCredentials { mqtt }))
}
