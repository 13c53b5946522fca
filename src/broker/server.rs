//! Start-up: rumqttd's router on its own thread and velt's one MQTT listener on velt's
//! runtime, so that a bind error is an error here instead of a panic on a broker thread.
//!
//! `Router::spawn` returns a sender whose type rumqttd does not export, so everything that
//! needs it is built in [`start`] and kept in closures.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rumqttd::local::LinkBuilder;
use rumqttd::{LinkType, Router, Server, ServerSettings};
use tokio::task::JoinHandle;

use super::edge::{Edge, Shared};
use super::link::{LinkFactory, kick};
use super::principal::Directory;
use super::{Error, Result};
use crate::auth::Tokens;

/// Attempts at a free port when the configured port is 0.
const PORT_ATTEMPTS: usize = 5;

pub(crate) struct Started {
    pub shared: Arc<Shared>,
    pub factory: LinkFactory,
    pub local_addr: SocketAddr,
    pub listener: JoinHandle<()>,
}

/// The router limits must be usable: rumqttd's defaults are all zero, which refuses every
/// connection (`max_connections`) or panics the router (`max_segment_size` < 1 KiB).
fn check_router(router: &rumqttd::RouterConfig) -> Result<()> {
    let problems = [
        (
            router.max_connections == 0,
            "router.max_connections must be > 0",
        ),
        (
            router.max_outgoing_packet_count == 0,
            "router.max_outgoing_packet_count must be > 0",
        ),
        (
            router.max_segment_size < 1024,
            "router.max_segment_size must be >= 1024",
        ),
        (
            router.max_segment_count == 0,
            "router.max_segment_count must be > 0",
        ),
    ];
    match problems.iter().find(|(bad, _)| *bad) {
        Some((_, problem)) => Err(Error::Config(problem.to_string())),
        None => Ok(()),
    }
}

/// The one listener velt runs: `[v4.*]` in broker.toml (exactly one; it also speaks
/// MQTT 5). Sections velt does not run are refused rather than silently ignored.
fn listener_settings(config: &rumqttd::Config) -> Result<ServerSettings> {
    let unsupported = [
        (
            config.v5.is_some(),
            "[v5]: MQTT 5 is served on the [v4] listener's port",
        ),
        (config.ws.is_some(), "[ws]: websockets are not supported"),
        (
            config.bridge.is_some(),
            "[bridge]: a bridge would bypass the ACL",
        ),
        (config.cluster.is_some(), "[cluster] is not supported"),
    ];
    if let Some((_, what)) = unsupported.iter().find(|(present, _)| *present) {
        return Err(Error::Config(what.to_string()));
    }
    if config.console.is_some() || config.prometheus.is_some() || config.metrics.is_some() {
        tracing::warn!("broker.toml: [console], [prometheus] and [metrics] are ignored");
    }
    let servers = config.v4.as_ref().filter(|servers| !servers.is_empty());
    match servers.map(|servers| servers.values().collect::<Vec<_>>()) {
        Some(servers) if servers.len() == 1 => {
            let settings = servers[0].clone();
            if settings.tls.is_some() {
                return Err(Error::Config("[v4.*.tls] is not supported".into()));
            }
            if settings.connections.auth.is_some() {
                return Err(Error::Config(
                    "[v4.*.connections.auth]: velt authenticates with its tokens".into(),
                ));
            }
            Ok(settings)
        }
        _ => Err(Error::Config(
            "broker.toml needs exactly one [v4.<name>] listener".into(),
        )),
    }
}

fn free_port(ip: std::net::IpAddr) -> Result<SocketAddr> {
    StdListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|err| Error::Listen {
            addr: SocketAddr::new(ip, 0),
            source: err,
        })
}

/// Starts the router and the listener; the listener is bound when this returns.
pub(crate) async fn start(
    config: &rumqttd::Config,
    listen: SocketAddr,
    tokens: Arc<Tokens>,
    directory: Arc<dyn Directory>,
) -> Result<Started> {
    check_router(&config.router)?;
    let mut settings = listener_settings(config)?;
    if !settings.connections.dynamic_filters {
        // Without it the router disconnects a client publishing to a topic nobody is
        // subscribed to yet.
        return Err(Error::Config(
            "[v4.*.connections] dynamic_filters must be true".into(),
        ));
    }

    let router_tx = Router::new(config.id, config.router.clone()).spawn();
    let link_tx = router_tx.clone();
    let factory: LinkFactory = Arc::new(move |client_id: &str| {
        LinkBuilder::new(client_id, link_tx.clone())
            .clean_session(true)
            .dynamic_filters(true)
            .build()
            .map(|(tx, rx, _connack)| (tx, rx))
            .map_err(|err| err.to_string())
    });
    let kick_factory = factory.clone();
    let shared = Arc::new(Shared::new(
        tokens,
        Box::new(move |session| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(kick(kick_factory.clone(), session));
            }
        }),
    ));
    let auth_shared = shared.clone();
    settings
        .connections
        .set_auth_handler(move |client_id, _username, password| {
            let shared = auth_shared.clone();
            let directory = directory.clone();
            async move { super::admit(&shared, &*directory, &client_id, &password).await }
        });

    let fixed = listen.port() != 0;
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let addr = if fixed {
            listen
        } else {
            free_port(listen.ip())?
        };
        settings.listen = addr;
        let server = Server::new(
            settings.clone(),
            router_tx.clone(),
            Edge::new(shared.clone()),
        );
        match spawn_server(server, addr).await {
            Ok(listener) => {
                return Ok(Started {
                    shared,
                    factory,
                    local_addr: addr,
                    listener,
                });
            }
            // Someone took the port we picked in between: pick another.
            Err(Error::AddrInUse(_)) if !fixed => last_error = Some(Error::AddrInUse(addr)),
            Err(err) => return Err(err),
        }
    }
    Err(last_error.unwrap_or(Error::AddrInUse(listen)))
}

/// Polls `Server::start` once inline: binding a literal address has no real await point,
/// so the first poll either fails (bind error) or parks in `accept` (listening). Then the
/// future is handed to the runtime.
async fn spawn_server(mut server: Server<Edge>, addr: SocketAddr) -> Result<JoinHandle<()>> {
    let mut run: Pin<Box<dyn Future<Output = Result<(), io::Error>> + Send>> =
        Box::pin(async move {
            server.start(LinkType::Remote).await.map_err(|err| {
                // rumqttd's server error type is not exported; its io error is the source.
                let kind = std::error::Error::source(&err)
                    .and_then(|source| source.downcast_ref::<io::Error>())
                    .map_or(io::ErrorKind::Other, io::Error::kind);
                io::Error::new(kind, err.to_string())
            })
        });
    match std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await {
        Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::AddrInUse => {
            Err(Error::AddrInUse(addr))
        }
        Poll::Ready(Err(source)) => Err(Error::Listen { addr, source }),
        Poll::Ready(Ok(())) => Err(Error::Listen {
            addr,
            source: io::Error::other("listener ended at once"),
        }),
        Poll::Pending => Ok(tokio::spawn(async move {
            if let Err(err) = run.await {
                tracing::error!(%addr, error = %err, "MQTT listener stopped");
            }
        })),
    }
}
