//! The `crashes` table: impacts detected in the sample stream, listed per owner.

use super::{Result, Store, on_pool};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Crash {
    pub id: i64,
    pub device_id: i64,
    pub session_id: Option<i64>,
    pub ts: i64,
    pub severity: String,
    pub peak_accel: f32,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub confirmed: String,
    pub created_at: i64,
}

/// A crash found by the detector, written with the samples it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCrash {
    pub device_id: i64,
    pub session_id: Option<i64>,
    pub ts: i64,
    pub severity: &'static str,
    pub peak_accel: f32,
    pub created_at: i64,
}

impl Store {
    /// Crashes of every device of `user_id`, newest first.
    pub async fn crashes_of(&self, user_id: i64) -> Result<Vec<Crash>> {
        let sql = "SELECT c.id, c.device_id, c.session_id, c.ts, c.severity, c.peak_accel, c.latitude, \
                   c.longitude, c.confirmed, c.created_at \
                   FROM crashes c JOIN devices d ON d.id = c.device_id \
                   WHERE d.user_id = ? ORDER BY c.ts DESC, c.id DESC";
        Ok(on_pool!(self, p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await?))
    }
}
