//! Builds every component from the [`Config`] and owns the tasks and their shutdown
//! order: stop accepting requests and connections, let in-flight requests finish, commit
//! and acknowledge what was received, drain the writer, close the database.

use std::{
    future::Future,
    io::{Read, Write},
    net::SocketAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    sync::Arc,
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState, HttpSettings},
    auth::Tokens,
    broker::{self, Broker, BrokerSettings},
    config::{Config, Secret},
    ingest::{Writer, mqtt::MqttIngest},
    store::{self, Store},
};

/// A velt server with its sockets bound and its database migrated, ready to [`run`](App::run).
pub struct App {
    config: Config,
    store: Store,
    tokens: Arc<Tokens>,
    http: TcpListener,
    broker: Arc<Broker>,
}

impl App {
    /// Connects to the database, applies migrations and binds the listeners, so that
    /// every start-up error surfaces here.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let tokens =
            Arc::new(crate::auth::configured_tokens(&config).context("invalid JWT secret")?);

        let store = connect(&config).await?;
        store.migrate().await.context("database migration failed")?;
        // No connection is open before the broker starts.
        store.mark_all_offline(crate::timestamp::now_us()).await?;

        let broker_config = broker::load_config(config.broker_config.as_deref())?;
        let settings = BrokerSettings {
            listen: config.mqtt_listen,
            config: broker_config,
        };
        let broker =
            Arc::new(Broker::start(settings, tokens.clone(), Arc::new(store.clone())).await?);

        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http_listen))?;
        tracing::info!(addr = %http.local_addr()?, "REST API listening");
        Ok(App {
            config,
            store,
            tokens,
            http,
            broker,
        })
    }

    /// The address the REST API is bound to (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address the MQTT broker is bound to (useful with port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// Serves until `shutdown` resolves, then shuts down in order.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let (writer, writer_task) =
            Writer::spawn(self.store.clone(), self.config.writer.clone(), stop.clone());
        self.broker.set_backpressure(writer.saturation());
        let live = Arc::new(crate::ingest::live::Hub::default());
        let ingest = MqttIngest::start(
            &self.broker,
            self.store.clone(),
            writer.clone(),
            live.clone(),
            stop.clone(),
        )
        .await?;
        let state = AppState {
            store: self.store.clone(),
            writer,
            broker: self.broker.clone(),
            live,
            tokens: self.tokens,
            auth_limiter: Arc::new(api::auth_limiter(self.config.auth_rate_limit_per_minute)),
            metrics: Arc::new(api::Metrics::new(ingest.metrics.clone())),
            shutdown: stop.clone(),
        };
        let settings = HttpSettings {
            cors_origins: self.config.cors_origins.clone(),
            max_body_bytes: self.config.max_body_bytes,
        };
        let router = api::router(state, &settings);

        let signalled = stop.clone();
        axum::serve(
            self.http,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            signalled.cancel();
        })
        .await
        .context("HTTP server failed")?;

        // Devices go offline and resend what was not acknowledged, to whichever node
        // serves them next; what was received is committed and acknowledged first.
        self.broker.shutdown().await;
        ingest.join().await;
        // The router, the ingest tasks and with them every writer handle are gone: the
        // writer drains and ends.
        writer_task.await.context("writer task failed")?;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects to the configured database, logging which one (without its password).
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url.as_ref().map(Secret::expose);
    let shown = match url {
        Some(url) => store::redact_url(url),
        None => format!("sqlite:{}", config.data_dir.join("velt.db").display()),
    };
    let store = Store::connect(url, &config.data_dir, config.db_max_connections)
        .await
        .with_context(|| format!("cannot open database {shown}"))?;
    tracing::info!(database = %shown, backend = ?store.backend(), "database connected");
    Ok(store)
}

/// The JWT secret kept in `<data dir>/jwt-secret`, created (random, mode 0600) on first use.
pub(crate) fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = data_dir.join("jwt-secret");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let secret = crate::auth::token::random_id() + &crate::auth::token::random_id();
            file.write_all(secret.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(Secret::new(secret))
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut file = std::fs::File::open(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if file.metadata()?.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "JWT secret file is readable by others; chmod 600 it");
            }
            let mut secret = String::new();
            file.read_to_string(&mut secret)?;
            let secret = secret.trim().to_owned();
            anyhow::ensure!(
                secret.len() >= 32,
                "{} holds a secret shorter than 32 bytes",
                path.display()
            );
            Ok(Secret::new(secret))
        }
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("jwt-secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(first.expose().len(), 64);
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), first);
    }
}
