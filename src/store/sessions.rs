//! The `sessions` table: recording sessions of a user, optionally bound to one device.

use std::collections::HashMap;

use super::{InsertId, Result, Store, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub device_id: Option<i64>,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub created_at: i64,
}

/// Result of stopping a session.
#[derive(Debug)]
pub enum StopOutcome {
    Stopped(Session),
    AlreadyStopped,
    NotFound,
}

const COLUMNS: &str = "id, user_id, device_id, start_time, end_time, created_at";

impl Store {
    pub async fn insert_session(
        &self,
        user_id: i64,
        device_id: Option<i64>,
        now: i64,
    ) -> Result<Session> {
        let sql =
            "INSERT INTO sessions (user_id, device_id, start_time, created_at) VALUES (?, ?, ?, ?)";
        let id = on_pool!(self, p => sqlx::query(sql)
            .bind(user_id)
            .bind(device_id)
            .bind(now)
            .bind(now)
            .execute(p)
            .await?
            .insert_id());
        Ok(Session {
            id,
            user_id,
            device_id,
            start_time: now,
            end_time: None,
            created_at: now,
        })
    }

    /// The user's sessions, newest first.
    pub async fn sessions_of(&self, user_id: i64) -> Result<Vec<Session>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_id = ? ORDER BY start_time DESC, id DESC"
        );
        Ok(on_pool!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?))
    }

    pub async fn session_of(&self, user_id: i64, id: i64) -> Result<Option<Session>> {
        let sql = format!("SELECT {COLUMNS} FROM sessions WHERE id = ? AND user_id = ?");
        Ok(
            on_pool!(self, p => sqlx::query_as(&sql).bind(id).bind(user_id).fetch_optional(p).await?),
        )
    }

    pub async fn stop_session(&self, user_id: i64, id: i64, now: i64) -> Result<StopOutcome> {
        let sql =
            "UPDATE sessions SET end_time = ? WHERE id = ? AND user_id = ? AND end_time IS NULL";
        let stopped = on_pool!(self, p => sqlx::query(sql).bind(now).bind(id).bind(user_id).execute(p).await?.rows_affected());
        Ok(match self.session_of(user_id, id).await? {
            None => StopOutcome::NotFound,
            Some(session) if stopped == 1 => StopOutcome::Stopped(session),
            Some(_) => StopOutcome::AlreadyStopped,
        })
    }

    /// Deletes a session; its samples stay, unattributed. False if the user has no such session.
    pub async fn delete_session(&self, user_id: i64, id: i64) -> Result<bool> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let owned = sqlx::query("DELETE FROM sessions WHERE id = ? AND user_id = ?")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if owned == 0 {
                return Ok(false);
            }
            for sql in [
                "UPDATE telemetry SET session_id = NULL WHERE session_id = ?",
                "UPDATE crashes SET session_id = NULL WHERE session_id = ?",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }

    /// The subset of `ids` that are sessions of `user_id`.
    pub async fn owned_session_ids(&self, user_id: i64, ids: &[i64]) -> Result<Vec<i64>> {
        self.owned_ids("sessions", user_id, ids).await
    }

    /// For each of `device_ids` (all owned by `user_id`), the open session its samples
    /// belong to, if any: see [`pick_open_sessions`].
    pub async fn open_sessions(
        &self,
        user_id: i64,
        device_ids: &[i64],
    ) -> Result<HashMap<i64, i64>> {
        let sql = "SELECT id, device_id FROM sessions WHERE user_id = ? AND end_time IS NULL ORDER BY start_time DESC, id DESC";
        let open: Vec<(i64, Option<i64>)> =
            on_pool!(self, p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await?);
        Ok(pick_open_sessions(&open, device_ids))
    }
}

/// Attribution rule for samples that name no session: the newest open session bound to
/// their device, else the user's newest open session bound to no device (the original
/// app's sessions have none). `open` is `(session id, device id)`, newest first.
fn pick_open_sessions(open: &[(i64, Option<i64>)], device_ids: &[i64]) -> HashMap<i64, i64> {
    let unbound = open
        .iter()
        .find(|(_, device)| device.is_none())
        .map(|(id, _)| *id);
    device_ids
        .iter()
        .filter_map(|&device| {
            open.iter()
                .find(|(_, bound)| *bound == Some(device))
                .map(|(id, _)| *id)
                .or(unbound)
                .map(|session| (device, session))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_session_wins_over_unbound_and_newest_wins() {
        let open = [(9, None), (8, Some(1)), (7, Some(1)), (6, None)];
        let picked = pick_open_sessions(&open, &[1, 2]);
        assert_eq!(picked.get(&1), Some(&8));
        assert_eq!(picked.get(&2), Some(&9));
    }

    #[test]
    fn no_open_session_means_no_attribution() {
        let picked = pick_open_sessions(&[(3, Some(5))], &[1]);
        assert!(picked.is_empty());
    }
}
