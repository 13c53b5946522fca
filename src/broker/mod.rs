//! The embedded MQTT broker: rumqttd 0.20's router and velt's own front door.
//!
//! velt runs rumqttd's `Router` and one `Server` on its own runtime; every connection is
//! wrapped by [`edge`]'s `Protocol` wrapper, which authenticates the CONNECT against
//! velt's tokens ([`principal`]), enforces the topic ACL ([`acl`]) on PUBLISH, SUBSCRIBE,
//! UNSUBSCRIBE and wills, refuses topics the router cannot handle, and knows exactly when
//! each connection opens and closes ([`registry`], [`presence`]). The database part of
//! admission (revoked or deleted devices, a user's devices) runs in rumqttd's async auth
//! handler, [`admit`]. In-process clients are [`Link`]s. See `docs/architecture.md`.
//!
//! There is no shutdown in rumqttd's router: [`Broker::shutdown`] stops accepting and
//! closes every connection; the idle router thread ends with the process.

mod acl;
mod edge;
mod link;
mod presence;
mod principal;
mod registry;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use acl::{covers, is_valid_filter, is_valid_topic, may_publish, may_subscribe};
pub use edge::KEEP_ALIVE_FOR_ZERO;
pub use link::Link;
pub use presence::PresenceEvent;
pub use principal::{
    ClaimedId, DeviceRecord, Directory, DirectoryError, INTERNAL_PREFIX, Principal, Refusal,
    authenticate, parse_client_id,
};

use edge::{Shared, TICKET_PREFIX};
use link::LinkFactory;
use registry::Session;

use crate::auth::Tokens;

/// The broker.toml built into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../../broker.toml");

/// Capacity of the presence channel (events wait in a coalescing queue beyond it).
const PRESENCE_CHANNEL: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MQTT port {0} is already in use")]
    AddrInUse(SocketAddr),
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read broker config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid broker config {path}: {source}")]
    ConfigParse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid broker config: {0}")]
    Config(String),
    #[error("in-process client ids must start with {INTERNAL_PREFIX:?}: {0:?}")]
    InvalidLinkId(String),
    #[error("in-process link failed: {0}")]
    Link(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a rumqttd config (`broker.toml` schema); `None`: the built-in [`DEFAULT_CONFIG`].
pub fn load_config(path: Option<&Path>) -> Result<rumqttd::Config> {
    let (path, text) = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
                path: path.to_owned(),
                source,
            })?;
            (path.to_owned(), text)
        }
        None => (
            PathBuf::from("<built-in broker.toml>"),
            DEFAULT_CONFIG.to_owned(),
        ),
    };
    toml::from_str(&text).map_err(|source| Error::ConfigParse {
        path,
        source: Box::new(source),
    })
}

/// What [`Broker::start`] needs besides tokens and the directory.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Where to listen (overrides the listen address in `config`); port 0 picks one.
    pub listen: SocketAddr,
    pub config: rumqttd::Config,
}

/// Counters of the edge; every refusal is counted (and logged).
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    /// CONNECTs refused by the token check, the client-id binding, the will ACL or the
    /// database check.
    pub connections_refused: AtomicU64,
    /// PUBLISHes refused (the connection was closed).
    pub publishes_refused: AtomicU64,
    /// SUBSCRIBE filters refused (answered with a failure code).
    pub subscriptions_refused: AtomicU64,
    /// UNSUBACKs the edge wrote itself (for filters the router did not have).
    pub unsubacks_synthesized: AtomicU64,
    /// Connections velt closed (`disconnect_device`, `shutdown`, revoked while connecting).
    pub kicks: AtomicU64,
    /// Times a device's PUBLISH was held back because ingest was saturated.
    pub backpressure_stalls: AtomicU64,
}

impl Metrics {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub publishes_refused: u64,
    pub subscriptions_refused: u64,
    pub unsubacks_synthesized: u64,
    pub kicks: u64,
    pub backpressure_stalls: u64,
    /// Presence events replaced by a newer one of the same device before delivery.
    pub presence_coalesced: u64,
    /// Connections open right now.
    pub live_connections: u64,
}

/// The running broker.
pub struct Broker {
    shared: Arc<Shared>,
    factory: LinkFactory,
    local_addr: SocketAddr,
    listener: JoinHandle<()>,
    forwarder: JoinHandle<()>,
    presence: Mutex<Option<mpsc::Receiver<PresenceEvent>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Starts the router and binds the listener; a taken port is [`Error::AddrInUse`].
    pub async fn start(
        settings: BrokerSettings,
        tokens: Arc<Tokens>,
        directory: Arc<dyn Directory>,
    ) -> Result<Broker> {
        let started = server::start(&settings.config, settings.listen, tokens, directory).await?;
        tracing::info!(addr = %started.local_addr, "MQTT broker listening (MQTT 3.1.1 and 5)");
        let (tx, rx) = mpsc::channel(PRESENCE_CHANNEL);
        let forwarder = tokio::spawn(started.shared.presence.clone().forward(tx));
        Ok(Broker {
            shared: started.shared,
            factory: started.factory,
            local_addr: started.local_addr,
            listener: started.listener,
            forwarder,
            presence: Mutex::new(Some(rx)),
        })
    }

    /// The address the listener is bound to (the real port when configured with 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connects an in-process client; `client_id` must start with `velt-`.
    pub async fn link(&self, client_id: &str) -> Result<Link> {
        if !client_id.starts_with(INTERNAL_PREFIX) || client_id.len() > 64 {
            return Err(Error::InvalidLinkId(client_id.to_owned()));
        }
        Link::connect(self.factory.clone(), client_id).await
    }

    /// Presence events (devices only). The receiver can be taken once; later calls get
    /// `None`.
    pub fn presence(&self) -> Option<mpsc::Receiver<PresenceEvent>> {
        self.presence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Closes the live connection of `device_id` at once, and those of users watching
    /// it: call it after rotating the device's token or deleting the device (after the
    /// database change is committed). A connection being admitted concurrently is closed
    /// too as soon as it is accepted. Returns how many connections were closed.
    pub async fn disconnect_device(&self, device_id: i64) -> usize {
        let sessions = self.shared.registry.revoke_device(device_id);
        let count = sessions.len();
        self.kick_all(sessions).await;
        count
    }

    async fn kick_all(&self, sessions: Vec<Arc<Session>>) {
        let kicks = sessions.into_iter().map(|session| {
            self.shared.metrics.count(&self.shared.metrics.kicks);
            link::kick(self.factory.clone(), session)
        });
        futures_util::future::join_all(kicks).await;
    }

    /// Installs the ingest's saturation check: while it returns true, devices' PUBLISHes
    /// are not read (their connections stall, their QoS 1 windows fill, TCP pushes back).
    pub fn set_backpressure(&self, saturated: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.shared.backpressure.set(Box::new(saturated));
    }

    /// The edge's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        let metrics = &self.shared.metrics;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections_accepted: load(&metrics.connections_accepted),
            connections_refused: load(&metrics.connections_refused),
            publishes_refused: load(&metrics.publishes_refused),
            subscriptions_refused: load(&metrics.subscriptions_refused),
            unsubacks_synthesized: load(&metrics.unsubacks_synthesized),
            kicks: load(&metrics.kicks),
            backpressure_stalls: load(&metrics.backpressure_stalls),
            presence_coalesced: load(&self.shared.presence.coalesced),
            live_connections: self.shared.registry.len() as u64,
        }
    }

    /// Stops accepting connections and closes every live one (their devices go offline).
    /// rumqttd's router has no shutdown: its thread stays, idle, until the process ends.
    pub async fn shutdown(&self) {
        self.listener.abort();
        let sessions = self.shared.registry.all();
        self.kick_all(sessions).await;
    }
}

impl Drop for Broker {
    /// Stops accepting; open connections live on until they end (use
    /// [`shutdown`](Broker::shutdown) first to close them).
    fn drop(&mut self) {
        self.listener.abort();
        self.forwarder.abort();
    }
}

/// rumqttd's auth handler: redeems the edge's admission ticket and checks the database.
/// Refusing here closes the socket without a CONNACK (rumqttd's behaviour).
async fn admit(
    shared: &Shared,
    directory: &dyn Directory,
    client_id: &str,
    password: &str,
) -> bool {
    if client_id.is_empty() {
        // Only a CONNECT the edge refused gets here with an empty id: let rumqttd answer it
        // with a CONNACK (the edge writes the refusal code into it).
        return true;
    }
    let ticket = password
        .strip_prefix(TICKET_PREFIX)
        .and_then(|ticket| ticket.parse::<u64>().ok());
    let session = ticket.and_then(|ticket| shared.tickets().remove(&ticket));
    let Some(session) = session.filter(|session| session.client_id == client_id) else {
        tracing::warn!(%client_id, "MQTT connection without admission ticket refused");
        shared.metrics.count(&shared.metrics.connections_refused);
        return false;
    };
    let verdict: Result<(), &'static str> = match &session.principal {
        Principal::Device {
            device_id,
            owner,
            token_version,
        } => match directory.device(*device_id).await {
            Ok(Some(record))
                if record.owner == *owner && record.token_version == *token_version =>
            {
                Ok(())
            }
            Ok(Some(record)) if record.owner != *owner => Err("device has another owner"),
            Ok(Some(_)) => Err("token revoked (rotated)"),
            Ok(None) => Err("device deleted"),
            Err(err) => {
                tracing::error!(%client_id, error = %err, "device lookup failed");
                Err("device lookup failed")
            }
        },
        Principal::User { user_id } => match directory.devices_of_user(*user_id).await {
            Ok(devices) => {
                let _ = session.owned.set(devices.into_iter().collect());
                Ok(())
            }
            Err(err) => {
                tracing::error!(%client_id, error = %err, "device lookup failed");
                Err("device lookup failed")
            }
        },
        Principal::Service { .. } => Ok(()),
    };
    match verdict {
        Ok(()) => {
            session.admitted.store(true, Ordering::SeqCst);
            true
        }
        Err(reason) => {
            shared.metrics.count(&shared.metrics.connections_refused);
            tracing::warn!(%client_id, reason, "MQTT connection refused");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_config_is_complete_and_sized_for_the_largest_batch() {
        let config = load_config(None).unwrap();
        let router = &config.router;
        assert!(router.max_connections > 0 && router.max_outgoing_packet_count > 0);
        assert!(router.max_segment_size >= 1024 && router.max_segment_count > 0);
        let listeners = config.v4.as_ref().unwrap();
        assert_eq!(listeners.len(), 1);
        assert!(config.v5.is_none());
        let connections = &listeners.values().next().unwrap().connections;
        assert!(connections.dynamic_filters);
        // 4096 samples at ~20 bytes each at worst, plus header and topic.
        assert!(connections.max_payload_size >= velt_proto::MAX_SAMPLES_PER_BATCH * 20 + 1024);
    }

    #[test]
    fn config_files_are_read_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, DEFAULT_CONFIG).unwrap();
        assert!(load_config(Some(&path)).is_ok());
        std::fs::write(&path, "[router]\nmax_connections = \"many\"\n").unwrap();
        let err = load_config(Some(&path)).unwrap_err();
        assert!(err.to_string().contains("broker.toml"), "{err}");
        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            load_config(Some(&missing)),
            Err(Error::ConfigRead { .. })
        ));
    }
}
