//! Crash detection: an acceleration magnitude far above gravity is an impact. Samples of
//! one device closer together than [`WINDOW_US`] form one event, reported at its peak.

use crate::store::{NewCrash, TelemetryRow};

/// Standard gravity, m/s².
pub const G: f32 = 9.806_65;
/// Peaks at or above these magnitudes (in g) are crashes of rising severity.
pub const LOW_G: f32 = 4.0;
pub const MEDIUM_G: f32 = 6.0;
pub const HIGH_G: f32 = 10.0;
/// Above-threshold samples of one device within this span are one event.
pub const WINDOW_US: i64 = 2_000_000;

/// Euclidean norm of an acceleration, m/s².
pub fn magnitude(accel: [f32; 3]) -> f32 {
    accel.iter().map(|a| a * a).sum::<f32>().sqrt()
}

fn severity(peak: f32) -> &'static str {
    if peak >= HIGH_G * G {
        "high"
    } else if peak >= MEDIUM_G * G {
        "medium"
    } else {
        "low"
    }
}

/// The crash events in `rows` (any order, any mix of devices), stamped `now`.
pub fn detect(rows: &[TelemetryRow], now: i64) -> Vec<NewCrash> {
    let mut hits: Vec<(&TelemetryRow, f32)> = rows
        .iter()
        .map(|row| (row, magnitude(row.accel)))
        .filter(|(_, magnitude)| *magnitude >= LOW_G * G)
        .collect();
    hits.sort_by_key(|(row, _)| (row.device_id, row.ts));

    let mut crashes: Vec<NewCrash> = Vec::new();
    let mut last_hit_ts = i64::MIN;
    for (row, peak) in hits {
        match crashes.last_mut() {
            Some(open) if open.device_id == row.device_id && row.ts - last_hit_ts < WINDOW_US => {
                if peak > open.peak_accel {
                    open.ts = row.ts;
                    open.peak_accel = peak;
                    open.severity = severity(peak);
                    open.session_id = row.session_id;
                }
            }
            _ => crashes.push(NewCrash {
                device_id: row.device_id,
                session_id: row.session_id,
                ts: row.ts,
                severity: severity(peak),
                peak_accel: peak,
                created_at: now,
            }),
        }
        last_hit_ts = row.ts;
    }
    crashes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device_id: i64, ts: i64, g: f32) -> TelemetryRow {
        TelemetryRow {
            device_id,
            ts,
            session_id: None,
            accel: [0.0, 0.0, g * G],
            gyro: [0.0; 3],
        }
    }

    #[test]
    fn gravity_and_walking_are_no_crash() {
        let rows: Vec<_> = (0..100)
            .map(|i| row(1, i * 10_000, 1.0 + (i % 3) as f32))
            .collect();
        assert!(detect(&rows, 0).is_empty());
    }

    #[test]
    fn one_impact_is_one_event_at_its_peak() {
        let rows = [
            row(1, 0, 1.0),
            row(1, 10_000, 5.0),
            row(1, 20_000, 12.0),
            row(1, 30_000, 7.0),
            row(1, 40_000, 1.0),
        ];
        let crashes = detect(&rows, 99);
        assert_eq!(crashes.len(), 1);
        assert_eq!(crashes[0].ts, 20_000);
        assert_eq!(crashes[0].severity, "high");
        assert_eq!(crashes[0].created_at, 99);
    }

    #[test]
    fn events_split_by_device_and_by_time() {
        let rows = [row(2, 0, 5.0), row(1, 0, 7.0), row(1, WINDOW_US + 1, 4.5)];
        let crashes = detect(&rows, 0);
        let found: Vec<_> = crashes
            .iter()
            .map(|c| (c.device_id, c.ts, c.severity))
            .collect();
        assert_eq!(
            found,
            [(1, 0, "medium"), (1, WINDOW_US + 1, "low"), (2, 0, "low")]
        );
    }
}
