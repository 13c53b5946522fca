//! The one configuration of the server: every setting is a `--flag` with a `VELT_…`
//! environment fallback, and tests build a [`Config`] in code.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

/// A string that must never reach a log line: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value itself; call sites are easy to audit by grepping `expose`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Server configuration. Doc comments double as `--help`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database URL: `mysql://user:pass@host:port/db` or `sqlite:path`. Unset: a SQLite
    /// file `velt.db` in the data directory.
    #[arg(long, env = "VELT_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<Secret>,

    /// Directory for local state (SQLite file, generated JWT secret).
    #[arg(long, env = "VELT_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Address of the REST API. Port 0 picks a free port (the bound address is logged).
    #[arg(
        long,
        env = "VELT_HTTP_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_listen: SocketAddr,

    /// Secret that signs every JWT. Unset: a random secret generated once and kept in
    /// `<data dir>/jwt-secret` (mode 0600).
    #[arg(long, env = "VELT_JWT_SECRET", global = true, hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of access tokens.
    #[arg(long, env = "VELT_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration, global = true)]
    pub access_token_ttl: Duration,

    /// Lifetime of refresh tokens.
    #[arg(long, env = "VELT_REFRESH_TOKEN_TTL", default_value = "30days", value_parser = humantime::parse_duration, global = true)]
    pub refresh_token_ttl: Duration,

    /// Login and register attempts allowed per client IP and minute.
    #[arg(
        long,
        env = "VELT_AUTH_RATE_LIMIT",
        default_value_t = 10,
        global = true
    )]
    pub auth_rate_limit_per_minute: u32,

    /// Allowed CORS origins, comma-separated; `*` allows any (local development).
    #[arg(
        long,
        env = "VELT_CORS_ORIGINS",
        default_value = "*",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "VELT_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Maximum database connections in the pool.
    #[arg(
        long,
        env = "VELT_DB_MAX_CONNECTIONS",
        default_value_t = 8,
        global = true
    )]
    pub db_max_connections: u32,

    #[command(flatten)]
    pub writer: WriterConfig,

    /// Address of the MQTT broker (MQTT 3.1.1 and 5 on the same port). Port 0 picks a
    /// free port (the bound address is logged).
    #[arg(
        long,
        env = "VELT_MQTT_LISTEN",
        default_value = "0.0.0.0:1883",
        global = true
    )]
    pub mqtt_listen: SocketAddr,

    /// rumqttd configuration file (`broker.toml` schema: router limits, connection
    /// settings). Unset: the `broker.toml` built into the binary.
    #[arg(long, env = "VELT_BROKER_CONFIG", global = true)]
    pub broker_config: Option<PathBuf>,

    /// Lifetime of device tokens (a sensor's MQTT password).
    #[arg(long, env = "VELT_DEVICE_TOKEN_TTL", default_value = "365days", value_parser = humantime::parse_duration, global = true)]
    pub device_token_ttl: Duration,
}

/// How the telemetry writer batches rows.
#[derive(Debug, Clone, Args)]
pub struct WriterConfig {
    /// Rows waiting for the writer at most; producers wait when it is full.
    #[arg(
        long = "writer-queue-rows",
        env = "VELT_WRITER_QUEUE_ROWS",
        default_value_t = 200_000,
        global = true
    )]
    pub queue_rows: usize,

    /// A flush starts once this many rows are waiting…
    #[arg(
        long = "writer-flush-rows",
        env = "VELT_WRITER_FLUSH_ROWS",
        default_value_t = 10_000,
        global = true
    )]
    pub flush_rows: usize,

    /// …or this long after the first waiting row arrived.
    #[arg(long = "writer-flush-interval", env = "VELT_WRITER_FLUSH_INTERVAL", default_value = "5ms", value_parser = humantime::parse_duration, global = true)]
    pub flush_interval: Duration,

    /// Flushes (transactions, each on its own connection) in flight at once. MySQL
    /// ingests faster with two; SQLite has one writer and always uses one.
    #[arg(
        long = "writer-flushes",
        env = "VELT_WRITER_FLUSHES",
        default_value_t = 2,
        global = true
    )]
    pub flushes: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_rows: 200_000,
            flush_rows: 10_000,
            flush_interval: Duration::from_millis(5),
            flushes: 2,
        }
    }
}

impl Config {
    /// The defaults of every flag, as `velt serve` with no arguments would use them.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: None,
            data_dir: data_dir.into(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: None,
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            auth_rate_limit_per_minute: 10,
            cors_origins: vec!["*".into()],
            max_body_bytes: 4 * 1024 * 1024,
            db_max_connections: 8,
            writer: WriterConfig::default(),
            mqtt_listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            broker_config: None,
            device_token_ttl: Duration::from_secs(365 * 24 * 3600),
        }
    }
}
