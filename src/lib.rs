//! velt: a backend for wearable motion sensors.
//!
//! - [`config`]: the one `Config` (flags with `VELT_…` env fallbacks).
//! - [`app`]: builds every component and owns start-up and shutdown order.
//! - [`api`]: the axum REST API under `/api/v1` (ingest, read-out, live WebSocket,
//!   metrics), with its OpenAPI document.
//! - [`auth`]: password hashing and the JWTs (knows no HTTP).
//! - [`broker`]: the embedded rumqttd MQTT broker and its edge: authentication, topic
//!   ACL, presence, in-process links.
//! - [`ingest`]: the MQTT subscriber and acker, the writer task every sample goes
//!   through, crash detection, and the live fan-out to WebSocket watchers.
//! - [`store`]: the database (MySQL/MariaDB or SQLite): pools, migrations, all SQL.
//! - [`timestamp`]: µs-since-epoch times and their RFC 3339 form.

pub mod api;
pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod ingest;
pub mod store;
pub mod timestamp;

pub use app::App;
pub use config::Config;
