//! In-process links: velt's own MQTT clients inside the broker (ingest subscribes here,
//! acks are published here), and the kick that closes a network connection at once.
//!
//! rumqttd's `LinkTx` does blocking channel sends into the router (and `LinkBuilder::build`
//! blocks for the router's CONNACK), so a [`Link`]'s sending half lives on its own thread
//! and async callers wait on a bounded queue instead of blocking a runtime worker.

use std::sync::Arc;

use bytes::Bytes;
use rumqttd::Notification;
use rumqttd::local::{LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use tokio::sync::{mpsc, oneshot};

use super::registry::Session;
use super::{Error, Result};

/// Connects an in-process client with this id to the router (blocking). rumqttd's
/// `LinkError` is 800 bytes large; its text is all velt uses.
pub(crate) type LinkFactory =
    Arc<dyn Fn(&str) -> std::result::Result<(LinkTx, LinkRx), String> + Send + Sync>;

enum Command {
    Subscribe(String, oneshot::Sender<Result<(), LinkError>>),
    Publish(String, Bytes, oneshot::Sender<Result<(), LinkError>>),
}

/// An in-process MQTT client (client id `velt-…`). It subscribes at QoS 0 and publishes at
/// QoS 0 (what rumqttd's links can do); what it receives carries no publisher identity:
/// trust the topic, which the edge's ACL guarantees.
pub struct Link {
    client_id: String,
    commands: mpsc::Sender<Command>,
    rx: LinkRx,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) async fn connect(factory: LinkFactory, client_id: &str) -> Result<Link> {
        let id = client_id.to_owned();
        let (tx, rx) = tokio::task::spawn_blocking(move || factory(&id))
            .await
            .map_err(|err| Error::Link(err.to_string()))?
            .map_err(Error::Link)?;
        let (commands, queue) = mpsc::channel(64);
        std::thread::Builder::new()
            .name(format!("mqtt-{client_id}"))
            .spawn(move || run_sender(tx, queue))
            .map_err(|err| Error::Link(err.to_string()))?;
        Ok(Link {
            client_id: client_id.to_owned(),
            commands,
            rx,
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Subscribes to `filter` (QoS 0). Once this returns, the router has the request
    /// queued ahead of anything published after.
    pub async fn subscribe(&mut self, filter: impl Into<String>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Subscribe(filter.into(), done), wait)
            .await
    }

    /// Publishes at QoS 0 (no retain). Waits while the router's queue is full.
    pub async fn publish(&mut self, topic: impl Into<String>, payload: Bytes) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Command::Publish(topic.into(), payload, done), wait)
            .await
    }

    async fn send(
        &self,
        command: Command,
        wait: oneshot::Receiver<Result<(), LinkError>>,
    ) -> Result<()> {
        let closed = || Error::Link("link closed".into());
        self.commands.send(command).await.map_err(|_| closed())?;
        wait.await
            .map_err(|_| closed())?
            .map_err(|err| Error::Link(err.to_string()))
    }

    /// The next message forwarded to this link: `(topic, payload)`. `None` once the
    /// router dropped the link. Answers the router's `Unschedule` (sent when this link
    /// fell `max_outgoing_packet_count` behind) itself, or the link would stall.
    pub async fn next(&mut self) -> Option<(String, Bytes)> {
        loop {
            match self.rx.next().await {
                Ok(Some(Notification::Forward(forward))) => {
                    let topic = String::from_utf8_lossy(&forward.publish.topic).into_owned();
                    return Some((topic, forward.publish.payload));
                }
                Ok(Some(Notification::Unschedule)) => {
                    if self.rx.wake().await.is_err() {
                        return None;
                    }
                }
                Ok(Some(Notification::Disconnect(..))) => return None,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(client_id = %self.client_id, error = %err, "in-process MQTT link ended");
                    return None;
                }
            }
        }
    }
}

fn run_sender(mut tx: LinkTx, mut queue: mpsc::Receiver<Command>) {
    while let Some(command) = queue.blocking_recv() {
        match command {
            Command::Subscribe(filter, done) => {
                let _ = done.send(tx.subscribe(filter).map(drop));
            }
            Command::Publish(topic, payload, done) => {
                let _ = done.send(tx.publish(topic, payload).map(drop));
            }
        }
    }
    // The Link is gone: leave the router cleanly.
    let _ = tx.try_send_disconnect();
}

/// `LinkTx` has no `disconnect`; this sends the DISCONNECT packet through its raw send.
trait SendDisconnect {
    fn try_send_disconnect(&mut self) -> std::result::Result<(), String>;
}

impl SendDisconnect for LinkTx {
    fn try_send_disconnect(&mut self) -> std::result::Result<(), String> {
        // `send` is async in name only (a blocking channel send): one poll completes it.
        futures_util::FutureExt::now_or_never(self.send(disconnect_packet()))
            .unwrap_or(Ok(0))
            .map(drop)
            .map_err(|err| err.to_string())
    }
}

fn disconnect_packet() -> Packet {
    Packet::Disconnect(
        Disconnect {
            reason_code: DisconnectReasonCode::AdministrativeAction,
        },
        None,
    )
}

/// Closes `session`'s network connection now, even while it is idle: the edge fails every
/// later read and write of it, and an in-process link with the same client id makes the
/// router drop it ("duplicate client id"), which wakes its connection task at once. The
/// link then disconnects itself.
pub(crate) async fn kick(factory: LinkFactory, session: Arc<Session>) {
    session.cancel();
    let id = session.client_id.clone();
    let result = tokio::task::spawn_blocking(move || {
        let (mut tx, _rx) = factory(&id)?;
        tx.try_send_disconnect()
    })
    .await;
    match result {
        Ok(Ok(())) => {
            tracing::info!(client_id = %session.client_id, "MQTT connection closed by velt")
        }
        Ok(Err(err)) => {
            tracing::warn!(client_id = %session.client_id, error = %err, "cannot close MQTT connection")
        }
        Err(err) => {
            tracing::warn!(client_id = %session.client_id, error = %err, "cannot close MQTT connection")
        }
    }
}
