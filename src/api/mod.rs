//! The REST API (axum): the router, its shared state, and the OpenAPI document.
//!
//! One module per resource, each exporting an `OpenApiRouter` whose handlers are
//! annotated for utoipa, so the document at `/api/v1/openapi.json` is generated from the
//! code it describes. Handlers hold no SQL (that is `store`) and no status mapping (that
//! is [`error`]). The layer is stateless: any number of nodes can serve it.

mod auth;
mod crashes;
mod devices;
mod error;
mod extract;
mod health;
mod live;
mod metrics;
mod readout;
mod sessions;
mod telemetry;

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, Method, header},
    response::IntoResponse,
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer, trace::TraceLayer};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{Error, ErrorBody, Result};
pub use metrics::Metrics;

use crate::{auth::Tokens, broker::Broker, ingest::Writer, store::Store};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub writer: Writer,
    /// To drop a device's live MQTT connection when its credentials end.
    pub broker: Arc<Broker>,
    /// Live samples and presence per device, for WebSocket watchers.
    pub live: Arc<crate::ingest::live::Hub>,
    /// Counters for `GET /metrics`.
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<Tokens>,
    pub auth_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Cancelled when the server shuts down: ends long-lived connections (WebSockets),
    /// which graceful HTTP shutdown does not wait for.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// HTTP-level settings of the router.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
}

/// A rate limiter for login and register: `per_minute` attempts per client IP, all of
/// which may come at once.
pub fn auth_limiter(per_minute: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_minute(per_minute))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "velt",
        description = "Backend for wearable motion sensors: auth, devices, sessions, telemetry and crashes. \
                       Every error body is `{\"error\": \"...\"}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "devices", description = "Paired sensors"),
        (name = "sessions", description = "Recording sessions"),
        (name = "telemetry", description = "Sample ingest, range reads, downsampling, exports, summaries"),
        (name = "live", description = "Live samples and presence over a WebSocket"),
        (name = "crashes", description = "Detected impacts"),
        (name = "health", description = "Probes"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let jwt = || {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            )
        };
        components.add_security_scheme("bearer", jwt());
        components.add_security_scheme("refresh_token", jwt());
    }
}

/// The versioned API with its OpenAPI document.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(auth::router())
        .merge(devices::router())
        .merge(sessions::router())
        .merge(telemetry::router())
        .merge(readout::router())
        .merge(live::router())
        .merge(crashes::router())
        .merge(health::router())
        .merge(metrics::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The whole HTTP application.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let (api, openapi) = api();
    api.route("/health", axum::routing::get(health::health))
        .route("/ready", axum::routing::get(health::ready))
        .route("/metrics", axum::routing::get(metrics::scrape))
        .fallback(|| async { Error::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .with_state(state)
        .merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", openapi))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(cors(&settings.cors_origins))
        .layer(CatchPanicLayer::custom(|_| Error::Panic.into_response()))
        .layer(TraceLayer::new_for_http())
}

fn cors(origins: &[String]) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600));
    if origins.iter().any(|o| o == "*") {
        return layer.allow_origin(tower_http::cors::Any);
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(origins)
}
