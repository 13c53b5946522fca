//! `GET /devices/{id}/live`: a WebSocket that pushes a device's samples as they arrive
//! (one JSON frame per incoming MQTT batch) and its presence changes.
//!
//! Fed by [`crate::ingest::live::Hub`], a bounded broadcast per device: a client that
//! reads too slowly stalls only its own socket task, which then misses frames and tells
//! the client how many in the next frame's `dropped`. The socket closes when the device is
//! unpaired, when the access token expires, and when the server shuts down (graceful
//! HTTP shutdown does not wait for upgraded connections, so the task watches
//! [`AppState::shutdown`] itself).

use std::time::Duration;

use axum::{
    extract::{
        FromRequestParts, RawQuery, State,
        ws::{
            CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
        },
    },
    http::request::Parts,
    response::Response,
};
use serde::Serialize;
use tokio::{
    sync::broadcast::{self, error::RecvError},
    time::{Instant, sleep_until, timeout},
};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Error, ErrorBody, Result,
    extract::{Id, bearer_token},
    readout::SampleView,
};
use crate::{
    auth::Kind,
    ingest::live::LiveEvent,
    timestamp::{now_us, to_rfc3339},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live))
}

/// How often an idle socket is pinged, so that dead peers are noticed.
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// One frame on the live socket, as JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LiveFrame {
    /// One batch as the device sent it, decoded.
    Samples {
        device_id: i64,
        /// Frames this client missed just before this one, because it read too slowly.
        dropped: u64,
        samples: Vec<SampleView>,
    },
    /// The device's connection state: first on connect (the stored state), then each change.
    Presence {
        device_id: i64,
        dropped: u64,
        online: bool,
        /// When it changed (RFC 3339); on connect, when the device was last seen.
        at: Option<String>,
    },
}

/// Why a live socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed or went away: nothing more to send.
    Gone,
    Unpaired,
    TokenExpired,
    Shutdown,
}

impl Ending {
    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Ending::Gone => return None,
            Ending::Unpaired => (1000, "device unpaired"),
            Ending::TokenExpired => (1008, "token expired"),
            Ending::Shutdown => (1001, "server shutting down"),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

/// What to do with one result of the device's broadcast channel.
#[derive(Debug, PartialEq)]
enum Step {
    Send(LiveFrame),
    Skip,
    End(Ending),
}

/// Turns a broadcast result into a frame, counting frames lost to lag in `dropped` and
/// handing the count to the next frame sent.
fn step(device_id: i64, event: Result<LiveEvent, RecvError>, dropped: &mut u64) -> Step {
    match event {
        Ok(LiveEvent::Samples(rows)) => Step::Send(LiveFrame::Samples {
            device_id,
            dropped: std::mem::take(dropped),
            samples: rows.iter().map(SampleView::from).collect(),
        }),
        Ok(LiveEvent::Presence { online, at }) => Step::Send(LiveFrame::Presence {
            device_id,
            dropped: std::mem::take(dropped),
            online,
            at: Some(to_rfc3339(at)),
        }),
        Ok(LiveEvent::Unpaired) => Step::End(Ending::Unpaired),
        Err(RecvError::Lagged(missed)) => {
            *dropped += missed;
            Step::Skip
        }
        // The hub only drops a channel nobody watches; we do, so this is the end anyway.
        Err(RecvError::Closed) => Step::End(Ending::Unpaired),
    }
}

/// The access token of a live request: Bearer, or `?access_token=` (browsers cannot set
/// headers on a WebSocket).
struct LiveUser {
    id: i64,
    /// When the token expires, µs since the epoch.
    expires_at: i64,
}

impl FromRequestParts<AppState> for LiveUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let from_query = parts.uri.query().and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "access_token")
                .map(|(_, value)| value.into_owned())
        });
        let token = bearer_token(parts)
            .map(str::to_owned)
            .or(from_query)
            .ok_or(Error::Unauthorized("missing bearer token"))?;
        let claims = state.tokens.verify(&token, Kind::Access)?;
        Ok(LiveUser {
            id: claims.user_id()?,
            expires_at: claims.exp.saturating_mul(1_000_000),
        })
    }
}

/// Watch a device live over a WebSocket. Frames are JSON [`LiveFrame`]s: first the
/// device's presence, then one `samples` frame per batch it publishes and a `presence`
/// frame per (dis)connection. Close codes: 1000 `device unpaired`, 1008 `token expired`,
/// 1001 `server shutting down`.
#[utoipa::path(get, path = "/devices/{id}/live", tag = "live",
    params(
        ("id" = i64, Path, description = "Device id"),
        ("access_token" = Option<String>, Query, description = "The access token, for clients that cannot send `Authorization: Bearer`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then JSON frames", body = LiveFrame),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`device not found` (or not the caller's)", body = ErrorBody),
        (status = 422, description = "Non-numeric id or unknown parameter", body = ErrorBody),
    ))]
async fn live(
    State(state): State<AppState>,
    user: LiveUser,
    Id(id): Id,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response> {
    if let Some(query) = query {
        if let Some((name, _)) =
            url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name != "access_token")
        {
            return Err(Error::Unprocessable(format!(
                "{name}: unknown query parameter"
            )));
        }
    }
    let device = state
        .store
        .device_of(user.id, id)
        .await?
        .ok_or(super::devices::NOT_FOUND)?;
    let upgrade = upgrade.map_err(|rejection| match rejection {
        WebSocketUpgradeRejection::MethodNotGet(_) => Error::MethodNotAllowed,
        other => Error::BadRequest(format!(
            "expected a WebSocket upgrade: {}",
            other.body_text()
        )),
    })?;
    // Watch before answering, so that nothing published after the upgrade is missed.
    let events = state.live.watch(id);
    let hello = LiveFrame::Presence {
        device_id: id,
        dropped: 0,
        online: device.status == "online",
        at: device.last_seen_at.map(to_rfc3339),
    };
    let lifetime = Duration::from_micros(user.expires_at.saturating_sub(now_us()).max(0) as u64);
    let expires = Instant::now() + lifetime;
    let shutdown = state.shutdown.clone();
    Ok(upgrade.on_upgrade(move |socket| serve(socket, id, events, hello, expires, shutdown)))
}

async fn serve(
    mut socket: WebSocket,
    device_id: i64,
    mut events: broadcast::Receiver<LiveEvent>,
    hello: LiveFrame,
    expires: Instant,
    shutdown: CancellationToken,
) {
    // Ends from outside win even while a send to a slow client is pending.
    let ending = tokio::select! {
        ending = pump(&mut socket, device_id, &mut events, hello) => ending,
        () = shutdown.cancelled() => Ending::Shutdown,
        () = sleep_until(expires) => Ending::TokenExpired,
    };
    tracing::debug!(device_id, ?ending, "live socket ends");
    if let Some(frame) = ending.close_frame() {
        let _ = timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }
}

async fn pump(
    socket: &mut WebSocket,
    device_id: i64,
    events: &mut broadcast::Receiver<LiveEvent>,
    hello: LiveFrame,
) -> Ending {
    if send(socket, &hello).await.is_err() {
        return Ending::Gone;
    }
    let mut dropped = 0;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            event = events.recv() => match step(device_id, event, &mut dropped) {
                Step::Send(frame) => {
                    if send(socket, &frame).await.is_err() {
                        return Ending::Gone;
                    }
                }
                Step::Skip => {}
                Step::End(ending) => return ending,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by the WebSocket layer; text from the client means nothing.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Ending::Gone,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return Ending::Gone;
                }
            }
        }
    }
}

async fn send(socket: &mut WebSocket, frame: &LiveFrame) -> Result<(), axum::Error> {
    let text = serde_json::to_string(frame).map_err(axum::Error::new)?;
    socket.send(Message::Text(text.into())).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{ingest::live::Hub, store::TelemetryRow};

    fn row(ts: i64) -> TelemetryRow {
        TelemetryRow {
            device_id: 4,
            ts,
            session_id: None,
            accel: [0.0, 0.0, 9.81],
            gyro: [0.0; 3],
        }
    }

    #[test]
    fn a_lagging_watcher_learns_how_many_frames_it_missed() {
        let hub = Hub::default();
        let mut events = hub.watch(4);
        for ts in 0..100 {
            hub.publish(4, || LiveEvent::Samples(Arc::new(vec![row(ts)])));
        }
        let mut dropped = 0;
        assert_eq!(
            step(
                4,
                events.try_recv().map_err(|e| match e {
                    broadcast::error::TryRecvError::Lagged(n) => RecvError::Lagged(n),
                    _ => RecvError::Closed,
                }),
                &mut dropped
            ),
            Step::Skip
        );
        assert_eq!(dropped, 36);
        let Step::Send(LiveFrame::Samples {
            dropped: told,
            samples,
            ..
        }) = step(
            4,
            events.try_recv().map_err(|_| RecvError::Closed),
            &mut dropped,
        )
        else {
            panic!("a samples frame");
        };
        assert_eq!((told, dropped), (36, 0));
        assert_eq!(samples[0].clone(), SampleView::from(&row(36)));
        // The next frame reports no loss.
        let Step::Send(LiveFrame::Samples { dropped: told, .. }) = step(
            4,
            events.try_recv().map_err(|_| RecvError::Closed),
            &mut dropped,
        ) else {
            panic!("a samples frame");
        };
        assert_eq!(told, 0);
    }

    #[test]
    fn unpairing_ends_the_stream() {
        let mut dropped = 0;
        assert_eq!(
            step(4, Ok(LiveEvent::Unpaired), &mut dropped),
            Step::End(Ending::Unpaired)
        );
        assert_eq!(
            Ending::TokenExpired.close_frame().map(|f| f.code),
            Some(1008)
        );
    }

    #[test]
    fn frames_are_tagged_json() {
        let frame = LiveFrame::Presence {
            device_id: 4,
            dropped: 0,
            online: true,
            at: None,
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            serde_json::json!({"type": "presence", "device_id": 4, "dropped": 0, "online": true, "at": null})
        );
    }
}
