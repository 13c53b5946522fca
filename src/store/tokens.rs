//! The `refresh_tokens` table: one row per issued refresh token, so that rotation can be
//! enforced and a replayed (already rotated) token revokes its whole family.

use super::{Result, Store, on_pool};

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live and is now used up; issue its successor in `family_id`.
    Rotated { user_id: i64, family_id: String },
    /// The token had already been rotated: its family is now revoked.
    Reused,
    /// Unknown, revoked or expired.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    family_id: String,
    user_id: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl Store {
    pub async fn insert_refresh_token(
        &self,
        id: &str,
        family_id: &str,
        user_id: i64,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<()> {
        let sql = "INSERT INTO refresh_tokens (id, family_id, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?, ?)";
        on_pool!(self, p => sqlx::query(sql)
            .bind(id)
            .bind(family_id)
            .bind(user_id)
            .bind(issued_at)
            .bind(expires_at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Marks refresh token `id` used, exactly once even under concurrent presentations.
    pub async fn rotate_refresh_token(&self, id: &str, now: i64) -> Result<Rotation> {
        let select = "SELECT family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE id = ?";
        let row: Option<TokenRow> =
            on_pool!(self, p => sqlx::query_as(select).bind(id).fetch_optional(p).await?);
        let Some(TokenRow {
            family_id,
            user_id,
            expires_at,
            used_at,
            revoked_at,
        }) = row
        else {
            return Ok(Rotation::Invalid);
        };
        if revoked_at.is_some() || expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        if used_at.is_none() {
            let claim = "UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL";
            let claimed = on_pool!(self, p => sqlx::query(claim).bind(now).bind(id).execute(p).await?.rows_affected());
            if claimed == 1 {
                return Ok(Rotation::Rotated { user_id, family_id });
            }
        }
        // Someone presents a token that was already exchanged: assume it was stolen.
        self.revoke_token_family(&family_id, now).await?;
        Ok(Rotation::Reused)
    }

    pub async fn revoke_token_family(&self, family_id: &str, now: i64) -> Result<()> {
        let sql =
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL";
        on_pool!(self, p => sqlx::query(sql).bind(now).bind(family_id).execute(p).await?.rows_affected());
        Ok(())
    }

    /// Family of refresh token `id`, if it is known, live and owned by `user_id`.
    pub async fn live_token_family(
        &self,
        id: &str,
        user_id: i64,
        now: i64,
    ) -> Result<Option<String>> {
        let sql = "SELECT family_id FROM refresh_tokens WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?";
        Ok(
            on_pool!(self, p => sqlx::query_scalar(sql).bind(id).bind(user_id).bind(now).fetch_optional(p).await?),
        )
    }

    pub async fn revoke_user_tokens(&self, user_id: i64, now: i64) -> Result<()> {
        let sql =
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL";
        on_pool!(self, p => sqlx::query(sql).bind(now).bind(user_id).execute(p).await?.rows_affected());
        Ok(())
    }
}
