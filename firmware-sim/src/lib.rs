//! velt-sim: simulated wearable sensors that behave like good velt firmware.
//!
//! - [`api`]: the REST calls a phone app makes for a sensor: register or log in, pair a
//!   device (which yields its MQTT credentials), start and stop sessions; [`api::provision`]
//!   pairs many at once.
//! - [`creds`]: the credentials file `provision` writes and `run` / `replay` read.
//! - [`imu`]: motion profiles (walk, cycle, still, mixed) with gravity, noise and an
//!   optional impact spike, as a [`SampleSource`].
//! - [`recording`]: CSV recordings (`ts,ax,ay,az,gx,gy,gz`), read for replay and written
//!   by `record`.
//! - [`device`]: one sensor's MQTT loop: batches with increasing `seq`, an outbox of
//!   unacknowledged batches resent after reconnects and ack timeouts, backoff, faults.
//! - [`fleet`]: many devices at once, live counters and the run's [`stats::Summary`].
//! - [`stats`]: counters and ack-latency percentiles.
//!
//! The `velt-sim` binary (`src/main.rs`) is a thin clap front end over these; the
//! integration tests and the `velt-bench` harness drive them in-process.

pub mod api;
pub mod creds;
pub mod device;
pub mod fleet;
pub mod imu;
pub mod recording;
pub mod stats;

pub use creds::{CredsFile, DeviceCreds};
pub use device::{Device, DeviceOptions, DeviceReport, Faults, Pacing};
pub use fleet::run_fleet;
pub use imu::{ImuGenerator, Profile};
pub use recording::ReplaySource;
pub use stats::{LiveStats, Summary};

use velt_proto::Sample;

/// Where a device's samples come from. Timestamps are µs from the start of the source
/// (the first sample is at or after 0); the device adds its own start time.
pub trait SampleSource: Send + 'static {
    /// Up to `max` next samples in time order; an empty vector means the source is done.
    fn next_batch(&mut self, max: usize) -> Vec<Sample>;

    /// `Some(p)` if every timestamp lies on a grid of `p` µs from 0, so batches can use the
    /// compact fixed-period timing; `None` for irregular timing (per-sample deltas).
    fn period_us(&self) -> Option<u32>;
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
