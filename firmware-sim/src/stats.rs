//! Counters shared by the devices of a run ([`LiveStats`], read by the progress bar) and
//! the run's final [`Summary`] with ack-latency percentiles.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::device::DeviceReport;

/// Live counters, updated by every device of a run.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub sent_samples: AtomicU64,
    pub acked_samples: AtomicU64,
    pub sent_batches: AtomicU64,
    pub acked_batches: AtomicU64,
    pub resent_batches: AtomicU64,
    pub connected: AtomicU64,
    pub reconnects: AtomicU64,
    /// Sum and count of ack latencies (µs) since the last [`LiveStats::take_latency`].
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl LiveStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_latency(&self, latency: Duration) {
        Self::add(&self.latency_sum_us, latency.as_micros() as u64);
        Self::add(&self.latency_count, 1);
    }

    /// Mean ack latency since the previous call, if any ack arrived.
    pub fn take_latency(&self) -> Option<Duration> {
        let sum = self.latency_sum_us.swap(0, Ordering::Relaxed);
        let count = self.latency_count.swap(0, Ordering::Relaxed);
        (count > 0).then(|| Duration::from_micros(sum / count))
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Ack latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `latencies_us` (sorted in place).
    pub fn from_micros(latencies_us: &mut [u32]) -> Latency {
        if latencies_us.is_empty() {
            return Latency::default();
        }
        latencies_us.sort_unstable();
        let n = latencies_us.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(latencies_us[rank - 1]) / 1000.0
        };
        let sum: u64 = latencies_us.iter().map(|&l| u64::from(l)).sum();
        Latency {
            count: n as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: f64::from(latencies_us[n - 1]) / 1000.0,
            mean_ms: sum as f64 / n as f64 / 1000.0,
        }
    }
}

/// The result of a run, over all its devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub devices: usize,
    pub duration_s: f64,
    /// Batches and samples published at least once.
    pub sent_batches: u64,
    pub sent_samples: u64,
    /// Batches and samples the server acknowledged as stored.
    pub acked_batches: u64,
    pub acked_samples: u64,
    /// Batches and samples still unacknowledged at the end (should be 0).
    pub outstanding_batches: u64,
    pub outstanding_samples: u64,
    /// Publications of a batch after its first (reconnects, ack timeouts).
    pub resent_batches: u64,
    /// Extra copies published by the `--duplicate-rate` fault.
    pub duplicate_batches: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub status_messages: u64,
    /// Acknowledged samples per second over the run.
    pub acked_samples_per_s: f64,
    pub ack_latency: Latency,
    /// Telemetry payload bytes (first publication of each batch).
    pub payload_bytes: u64,
    /// Whole MQTT PUBLISH packets of those batches (header, topic, packet id, payload).
    pub mqtt_bytes: u64,
    pub payload_bytes_per_sample: f64,
    pub mqtt_bytes_per_sample: f64,
}

impl Summary {
    /// Combines the devices' reports of a run that took `elapsed`.
    pub fn from_reports(reports: &[DeviceReport], elapsed: Duration) -> Summary {
        let mut summary = Summary {
            devices: reports.len(),
            duration_s: elapsed.as_secs_f64(),
            ..Summary::default()
        };
        let mut latencies = Vec::new();
        for r in reports {
            summary.sent_batches += r.sent_batches;
            summary.sent_samples += r.sent_samples;
            summary.acked_batches += r.acked_batches;
            summary.acked_samples += r.acked_samples;
            summary.outstanding_batches += r.outstanding_batches;
            summary.outstanding_samples += r.outstanding_samples;
            summary.resent_batches += r.resent_batches;
            summary.duplicate_batches += r.duplicate_batches;
            summary.reconnects += r.reconnects;
            summary.connect_failures += r.connect_failures;
            summary.status_messages += r.status_messages;
            summary.payload_bytes += r.payload_bytes;
            summary.mqtt_bytes += r.mqtt_bytes;
            latencies.extend_from_slice(&r.latencies_us);
        }
        summary.ack_latency = Latency::from_micros(&mut latencies);
        let secs = elapsed.as_secs_f64().max(1e-9);
        summary.acked_samples_per_s = summary.acked_samples as f64 / secs;
        let per_sample = |bytes: u64| bytes as f64 / summary.sent_samples.max(1) as f64;
        summary.payload_bytes_per_sample = per_sample(summary.payload_bytes);
        summary.mqtt_bytes_per_sample = per_sample(summary.mqtt_bytes);
        summary
    }

    /// Whether everything that was sent is acknowledged.
    pub fn all_acked(&self) -> bool {
        self.outstanding_batches == 0 && self.acked_batches == self.sent_batches
    }

    /// A few human-readable lines.
    pub fn to_text(&self) -> String {
        let l = &self.ack_latency;
        format!(
            "devices      {}\nduration     {:.1} s\nsent         {} batches, {} samples\nacked        {} batches, {} samples ({:.0} samples/s)\noutstanding  {} batches, {} samples\nresent       {} batches (duplicates injected: {})\nreconnects   {} (failed connects: {})\nack latency  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\nwire         {:.2} payload bytes/sample, {:.2} MQTT bytes/sample\n",
            self.devices,
            self.duration_s,
            self.sent_batches,
            self.sent_samples,
            self.acked_batches,
            self.acked_samples,
            self.acked_samples_per_s,
            self.outstanding_batches,
            self.outstanding_samples,
            self.resent_batches,
            self.duplicate_batches,
            self.reconnects,
            self.connect_failures,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            self.payload_bytes_per_sample,
            self.mqtt_bytes_per_sample,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let l = Latency::from_micros(&mut values);
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(Latency::from_micros(&mut []).count, 0);
    }
}
