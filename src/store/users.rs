//! The `users` table.

use super::{InsertId, Result, Store, on_pool, unique_to_conflict};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub username: String,
    pub locale: String,
    pub units: String,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

const COLUMNS: &str =
    "id, email, password_hash, username, locale, units, created_at, last_login_at";

impl Store {
    /// Creates a user; [`super::Error::Conflict`] when the email is taken.
    pub async fn insert_user(
        &self,
        email: &str,
        password_hash: &str,
        username: &str,
        now: i64,
    ) -> Result<User> {
        let sql =
            "INSERT INTO users (email, password_hash, username, created_at) VALUES (?, ?, ?, ?)";
        let id = on_pool!(self, p => sqlx::query(sql)
            .bind(email)
            .bind(password_hash)
            .bind(username)
            .bind(now)
            .execute(p)
            .await
            .map_err(unique_to_conflict)?
            .insert_id());
        Ok(User {
            id,
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            username: username.to_owned(),
            locale: "en".to_owned(),
            units: "metric".to_owned(),
            created_at: now,
            last_login_at: None,
        })
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?");
        Ok(on_pool!(self, p => sqlx::query_as(&sql).bind(email).fetch_optional(p).await?))
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?");
        Ok(on_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?))
    }

    pub async fn record_login(&self, id: i64, now: i64) -> Result<()> {
        let sql = "UPDATE users SET last_login_at = ? WHERE id = ?";
        on_pool!(self, p => sqlx::query(sql).bind(now).bind(id).execute(p).await?.rows_affected());
        Ok(())
    }
}
