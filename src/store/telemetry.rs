//! The `telemetry` table: one row per 6-axis sample, keyed by (device, sample time).

use sqlx::QueryBuilder;

use super::{Backend, NewCrash, Result, Store, on_pool};

/// One stored sample. `ts` is µs since the epoch; acceleration in m/s², rotation in rad/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetryRow {
    pub device_id: i64,
    pub ts: i64,
    pub session_id: Option<i64>,
    pub accel: [f32; 3],
    pub gyro: [f32; 3],
}

impl Store {
    /// Writes `groups` of samples and `crashes` in one transaction. A sample whose
    /// (device, ts) is stored already is skipped, and so is a crash re-detected in a
    /// re-sent batch; the result holds, per group, how many rows were new.
    pub async fn write_telemetry(
        &self,
        groups: &[&[TelemetryRow]],
        crashes: &[NewCrash],
    ) -> Result<Vec<u64>> {
        // Rows per statement, 9 placeholders each: under SQLite's 32 766 variables and
        // MySQL's 65 535 placeholders. MySQL's IGNORE only skips duplicate keys here:
        // values were validated before, so it hides no data errors.
        let (insert, chunk_rows) = match self.backend() {
            Backend::Sqlite => ("INSERT OR IGNORE", 3_000),
            Backend::MySql => ("INSERT IGNORE", 7_000),
        };
        let crash_sql = format!(
            "{insert} INTO crashes (device_id, session_id, ts, severity, peak_accel, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)"
        );
        let mut inserted = Vec::with_capacity(groups.len());
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for group in groups {
                let mut count = 0;
                for chunk in group.chunks(chunk_rows) {
                    let mut query = QueryBuilder::new(insert);
                    query.push(" INTO telemetry (device_id, ts, session_id, ax, ay, az, gx, gy, gz) ");
                    query.push_values(chunk, |mut row, sample| {
                        row.push_bind(sample.device_id).push_bind(sample.ts).push_bind(sample.session_id);
                        for value in sample.accel.iter().chain(&sample.gyro) {
                            row.push_bind(*value);
                        }
                    });
                    count += query.build().execute(&mut *tx).await?.rows_affected();
                }
                inserted.push(count);
            }
            for crash in crashes {
                sqlx::query(&crash_sql)
                    .bind(crash.device_id)
                    .bind(crash.session_id)
                    .bind(crash.ts)
                    .bind(crash.severity)
                    .bind(crash.peak_accel)
                    .bind(crash.created_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(inserted)
    }
}
