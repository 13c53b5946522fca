//! Integration tests: each starts a real velt server (port 0, its own database) and
//! talks to it over HTTP. Every test in a `backend_tests!` list runs against SQLite and,
//! with `VELT_TEST_MYSQL_URL` set and `--include-ignored`, against MySQL.

mod common;
mod device;

mod auth;
mod crashes;
mod devices;
mod http;
mod live;
mod mqtt;
mod readout;
mod recovery;
mod sessions;
mod telemetry;
