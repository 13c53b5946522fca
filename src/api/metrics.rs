//! `GET /metrics`: the server's counters in the Prometheus text format. velt's components
//! keep plain atomic counters; a scrape copies them into a Prometheus recorder (local to
//! this server, so several servers in one process, as in tests, stay apart) and renders it.

use std::sync::{Arc, atomic::Ordering};

use axum::{extract::State, http::header, response::IntoResponse};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use crate::ingest::mqtt;

/// What a scrape reads.
pub struct Metrics {
    recorder: PrometheusRecorder,
    ingest: Arc<mqtt::Metrics>,
}

impl Metrics {
    pub fn new(ingest: Arc<mqtt::Metrics>) -> Metrics {
        Metrics {
            recorder: PrometheusBuilder::new().build_recorder(),
            ingest,
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Counters of the MQTT edge, the ingest path and the writer, for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub(super) async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    let edge = state.broker.metrics();
    let ingest = &state.metrics.ingest;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    metrics::with_local_recorder(&state.metrics.recorder, || {
        let counters = [
            (
                "velt_mqtt_connections_accepted_total",
                edge.connections_accepted,
            ),
            (
                "velt_mqtt_connections_refused_total",
                edge.connections_refused,
            ),
            ("velt_mqtt_publishes_refused_total", edge.publishes_refused),
            (
                "velt_mqtt_subscriptions_refused_total",
                edge.subscriptions_refused,
            ),
            ("velt_mqtt_kicks_total", edge.kicks),
            (
                "velt_mqtt_backpressure_stalls_total",
                edge.backpressure_stalls,
            ),
            ("velt_ingest_batches_total", load(&ingest.batches)),
            ("velt_ingest_samples_total", load(&ingest.samples)),
            ("velt_ingest_malformed_total", load(&ingest.malformed)),
            (
                "velt_ingest_unknown_devices_total",
                load(&ingest.unknown_devices),
            ),
            (
                "velt_ingest_status_messages_total",
                load(&ingest.status_messages),
            ),
            ("velt_ingest_acks_total", load(&ingest.acks)),
            (
                "velt_ingest_write_failures_total",
                load(&ingest.write_failures),
            ),
        ];
        for (name, value) in counters {
            metrics::counter!(name).absolute(value);
        }
        metrics::gauge!("velt_mqtt_live_connections").set(edge.live_connections as f64);
        metrics::gauge!("velt_writer_queued_rows").set(state.writer.queued_rows() as f64);
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.recorder.handle().render(),
    )
}
