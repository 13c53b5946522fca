//! Storage: the connection pool of the configured backend (MySQL/MariaDB or SQLite), the
//! embedded migrations, and every SQL statement velt runs, grouped by table.
//!
//! [`Store`] is a concrete type over an enum of the two pools. SQL that is the same on
//! both backends is written once and expanded for each pool by `on_pool!`; statements
//! that differ sit side by side in a `match`. Row types are plain structs; times are
//! microseconds since the Unix epoch (see the migrations).

mod crashes;
mod devices;
mod migrations;
mod readout;
mod sessions;
mod telemetry;
mod tokens;
mod users;

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    QueryBuilder,
    migrate::MigrateDatabase,
    mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlQueryResult},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
        SqliteSynchronous,
    },
};

pub use crashes::{Crash, NewCrash};
pub use devices::{Device, DeviceUpdate};
pub use readout::{Aggregates, BucketRow, Gaps, Key, Peak, Selection, TimeRange};
pub use sessions::{Session, StopOutcome};
pub use telemetry::TelemetryRow;
pub use tokens::Rotation;
pub use users::User;

/// Errors of the storage layer; callers decide what they mean to a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported database URL scheme {0:?}: use mysql://… or sqlite:…")]
    UnsupportedUrl(String),
    /// A unique key already holds this value.
    #[error("unique constraint violated")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when retrying the same statement later may succeed: the server is unreachable,
    /// the pool is exhausted, or the database asked for a retry (deadlock, lock timeout,
    /// SQLite busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(err) => match err {
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => matches!(
                    db.code().as_deref(),
                    // MySQL: deadlock, lock wait timeout, server shutdown / gone away;
                    // SQLite: busy, locked.
                    Some("1213" | "1205" | "1053" | "2006" | "2013" | "5" | "6" | "261" | "517")
                ),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Maps a unique-key violation to [`Error::Conflict`]; every other error stays as it is.
fn unique_to_conflict(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict,
        _ => Error::Database(err),
    }
}

/// The id the database assigned to the row a single-row INSERT just created.
trait InsertId {
    fn insert_id(&self) -> i64;
}

impl InsertId for SqliteQueryResult {
    fn insert_id(&self) -> i64 {
        self.last_insert_rowid()
    }
}

impl InsertId for MySqlQueryResult {
    fn insert_id(&self) -> i64 {
        // AUTO_INCREMENT BIGINT ids stay far below i64::MAX.
        self.last_insert_id() as i64
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool, for SQL
/// that is identical on both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::MySql($pool) => $body,
        }
    };
}
use on_pool;

/// Which SQL backend a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// Handle to the database; cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects eagerly (a bad URL or an unreachable server fails here, not on the first
    /// request), creating the database or SQLite file if it does not exist yet.
    /// `url = None` means the SQLite file `velt.db` in `data_dir`.
    pub async fn connect(
        url: Option<&str>,
        data_dir: &Path,
        max_connections: u32,
    ) -> Result<Store> {
        let pool = match url {
            None => {
                let options = SqliteConnectOptions::new().filename(data_dir.join("velt.db"));
                Pool::Sqlite(connect_sqlite(options, max_connections).await?)
            }
            Some(url) if url.starts_with("sqlite:") => {
                let options = SqliteConnectOptions::from_str(url)?;
                Pool::Sqlite(connect_sqlite(options, max_connections).await?)
            }
            Some(url) if url.starts_with("mysql://") || url.starts_with("mariadb://") => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                if !sqlx::MySql::database_exists(&url).await? {
                    sqlx::MySql::create_database(&url).await?;
                }
                let options = MySqlConnectOptions::from_str(&url)?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?;
                Pool::MySql(pool)
            }
            Some(url) => {
                let scheme = url.split(':').next().unwrap_or_default();
                return Err(Error::UnsupportedUrl(scheme.to_owned()));
            }
        };
        Ok(Store { pool })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::MySql(_) => Backend::MySql,
        }
    }

    /// Applies every embedded migration not applied yet.
    pub async fn migrate(&self) -> Result<()> {
        migrations::run(self).await
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(drop)?);
        Ok(())
    }

    /// The subset of `ids` that are rows of `table` owned by `user_id`.
    async fn owned_ids(&self, table: &str, user_id: i64, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        on_pool!(self, p => {
            let mut query = QueryBuilder::new(format!("SELECT id FROM {table} WHERE user_id = "));
            query.push_bind(user_id).push(" AND id IN (");
            let mut list = query.separated(", ");
            for id in ids {
                list.push_bind(*id);
            }
            query.push(")");
            Ok(query.build_query_scalar().fetch_all(p).await?)
        })
    }

    /// Closes every connection; in-flight statements finish first.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

async fn connect_sqlite(options: SqliteConnectOptions, max_connections: u32) -> Result<SqlitePool> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// `url` with its password replaced by `***`, fit for a log line.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable database URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("mysql://root:hunter2@db:3306/velt"),
            "mysql://root:***@db:3306/velt"
        );
        assert_eq!(redact_url("mysql://root@db/velt"), "mysql://root@db/velt");
        assert_eq!(redact_url("sqlite:data/velt.db"), "sqlite:data/velt.db");
    }

    #[tokio::test]
    async fn unknown_scheme_is_a_clear_error() {
        let err = Store::connect(Some("postgres://x"), Path::new("."), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(s) if s == "postgres"));
    }
}
