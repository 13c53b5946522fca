//! The `devices` table. Every lookup takes the owner's user id, so a foreign device is
//! indistinguishable from a missing one.

use sqlx::QueryBuilder;

use super::{InsertId, Result, Store, on_pool, unique_to_conflict};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Device {
    pub id: i64,
    pub user_id: i64,
    pub hardware_id: String,
    pub alias: String,
    pub version: Option<String>,
    pub status: String,
    pub battery_level: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub token_version: i64,
    pub created_at: i64,
}

/// Fields a PATCH may change; `None` keeps the stored value.
#[derive(Debug, Default)]
pub struct DeviceUpdate<'a> {
    pub alias: Option<&'a str>,
    pub status: Option<&'a str>,
}

const COLUMNS: &str = "id, user_id, hardware_id, alias, version, status, battery_level, last_seen_at, token_version, created_at";

impl Store {
    /// Pairs a device; [`super::Error::Conflict`] when the hardware id is paired already.
    pub async fn insert_device(
        &self,
        user_id: i64,
        hardware_id: &str,
        alias: &str,
        now: i64,
    ) -> Result<Device> {
        let sql =
            "INSERT INTO devices (user_id, hardware_id, alias, created_at) VALUES (?, ?, ?, ?)";
        let id = on_pool!(self, p => sqlx::query(sql)
            .bind(user_id)
            .bind(hardware_id)
            .bind(alias)
            .bind(now)
            .execute(p)
            .await
            .map_err(unique_to_conflict)?
            .insert_id());
        Ok(Device {
            id,
            user_id,
            hardware_id: hardware_id.to_owned(),
            alias: alias.to_owned(),
            version: None,
            status: "onboarding".to_owned(),
            battery_level: None,
            last_seen_at: None,
            token_version: 1,
            created_at: now,
        })
    }

    pub async fn devices_of(&self, user_id: i64) -> Result<Vec<Device>> {
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE user_id = ? ORDER BY id");
        Ok(on_pool!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?))
    }

    pub async fn device_of(&self, user_id: i64, id: i64) -> Result<Option<Device>> {
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE id = ? AND user_id = ?");
        Ok(
            on_pool!(self, p => sqlx::query_as(&sql).bind(id).bind(user_id).fetch_optional(p).await?),
        )
    }

    /// Any device by id, whoever owns it: for the MQTT edge, which authenticates devices.
    pub async fn device_by_id(&self, id: i64) -> Result<Option<Device>> {
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE id = ?");
        Ok(on_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
    }

    /// Invalidates the device's MQTT password: returns the new token version.
    pub async fn bump_token_version(&self, user_id: i64, id: i64) -> Result<Option<i64>> {
        let sql =
            "UPDATE devices SET token_version = token_version + 1 WHERE id = ? AND user_id = ?";
        on_pool!(self, p => sqlx::query(sql).bind(id).bind(user_id).execute(p).await?.rows_affected());
        Ok(self
            .device_of(user_id, id)
            .await?
            .map(|device| device.token_version))
    }

    pub async fn update_device(
        &self,
        user_id: i64,
        id: i64,
        update: &DeviceUpdate<'_>,
    ) -> Result<Option<Device>> {
        let sql = "UPDATE devices SET alias = COALESCE(?, alias), status = COALESCE(?, status) WHERE id = ? AND user_id = ?";
        on_pool!(self, p => sqlx::query(sql)
            .bind(update.alias)
            .bind(update.status)
            .bind(id)
            .bind(user_id)
            .execute(p)
            .await?
            .rows_affected());
        self.device_of(user_id, id).await
    }

    /// Unpairs a device with its samples and crashes; its sessions stay, unbound.
    /// Returns false if the user has no such device.
    pub async fn delete_device(&self, user_id: i64, id: i64) -> Result<bool> {
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // Deleting the device row first is the ownership check for what follows.
            let owned = sqlx::query("DELETE FROM devices WHERE id = ? AND user_id = ?")
                .bind(id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if owned == 0 {
                return Ok(false);
            }
            // Explicit rather than by foreign key: the telemetry table has none, and
            // distributed SQL engines may not enforce them.
            for sql in [
                "DELETE FROM telemetry WHERE device_id = ?",
                "DELETE FROM crashes WHERE device_id = ?",
                "UPDATE sessions SET device_id = NULL WHERE device_id = ?",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Records a presence change unless a newer one is stored already: `version` orders
    /// the events of a device (the edge's event time in µs). Returns whether it applied.
    pub async fn apply_presence(
        &self,
        id: i64,
        online: bool,
        at: i64,
        version: i64,
    ) -> Result<bool> {
        let sql = "UPDATE devices SET status = ?, last_seen_at = ?, presence_version = ? \
                   WHERE id = ? AND presence_version < ?";
        let status = if online { "online" } else { "offline" };
        let applied = on_pool!(self, p => sqlx::query(sql)
            .bind(status)
            .bind(at)
            .bind(version)
            .bind(id)
            .bind(version)
            .execute(p)
            .await?
            .rows_affected());
        Ok(applied == 1)
    }

    /// Stores what a device reported about itself in a `status` message.
    pub async fn record_device_status(
        &self,
        id: i64,
        battery_level: u8,
        version: &str,
        at: i64,
    ) -> Result<()> {
        let sql =
            "UPDATE devices SET battery_level = ?, version = ?, last_seen_at = ? WHERE id = ?";
        on_pool!(self, p => sqlx::query(sql)
            .bind(i64::from(battery_level))
            .bind(version)
            .bind(at)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The seq velt last acknowledged to the device (0: nothing yet); `None` if it does
    /// not exist.
    pub async fn acked_seq(&self, id: i64) -> Result<Option<i64>> {
        let sql = "SELECT acked_seq FROM devices WHERE id = ?";
        Ok(on_pool!(self, p => sqlx::query_scalar(sql).bind(id).fetch_optional(p).await?))
    }

    /// Records acknowledged seqs, `(device id, seq)`, in one statement.
    pub async fn save_acked_seqs(&self, acked: &[(i64, i64)]) -> Result<()> {
        if acked.is_empty() {
            return Ok(());
        }
        on_pool!(self, p => {
            let mut query = QueryBuilder::new("UPDATE devices SET acked_seq = CASE id");
            for (id, seq) in acked {
                query.push(" WHEN ").push_bind(*id).push(" THEN ").push_bind(*seq);
            }
            query.push(" ELSE acked_seq END WHERE id IN (");
            let mut ids = query.separated(", ");
            for (id, _) in acked {
                ids.push_bind(*id);
            }
            query.push(")");
            query.build().execute(p).await?;
        });
        Ok(())
    }

    /// At start-up no connection is open yet: whatever was online is offline now.
    pub async fn mark_all_offline(&self, at: i64) -> Result<u64> {
        let sql =
            "UPDATE devices SET status = 'offline', presence_version = ? WHERE status = 'online'";
        Ok(on_pool!(self, p => sqlx::query(sql).bind(at).execute(p).await?.rows_affected()))
    }

    /// The subset of `ids` that are devices of `user_id`.
    pub async fn owned_device_ids(&self, user_id: i64, ids: &[i64]) -> Result<Vec<i64>> {
        self.owned_ids("devices", user_id, ids).await
    }
}
