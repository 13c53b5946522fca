//! The front door: [`Edge`], a `rumqttd::protocol::Protocol` wrapper around rumqttd's own
//! MQTT 3.1.1 (`V4`) and MQTT 5 (`V5`) codecs.
//!
//! rumqttd clones the `Protocol` value once per accepted socket and drops the clone when
//! the connection ends, however it ends. So [`Clone`] here starts a connection's state and
//! [`Drop`] ends it; in between, every packet the client sends passes `read_mut` (before
//! the router sees it) and every packet rumqttd sends passes `write`. Both are sync.
//!
//! - The protocol level is read from the CONNECT itself, so one port serves both versions.
//! - CONNECT: the token is checked ([`authenticate`]) and the will topic against the ACL.
//!   A refusal rewrites the CONNECT into one rumqttd refuses with a CONNACK of its own
//!   (empty client id, persistent session) and `write` turns that CONNACK's code into
//!   "bad user name or password" / "not authorized". An accepted CONNECT gets an
//!   admission ticket in place of its password: rumqttd's async auth handler
//!   ([`admit`](super::admit)) redeems it and does the database checks.
//! - PUBLISH outside the ACL (or with a v5 topic alias): the read fails, rumqttd closes
//!   the connection. SUBSCRIBE: refused filters are removed before the router sees them
//!   and get a failure code back in the SUBACK. UNSUBSCRIBE of filters the router does not
//!   have (it would send no UNSUBACK at all) becomes a PINGREQ whose PINGRESP is written
//!   as the UNSUBACK.
//! - The CONNACK that accepts a connection registers it and reports the device online;
//!   `Drop` reports it offline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use rumqttd::protocol::{
    ConnAck, ConnectReturnCode, Error as ProtocolError, LastWill, Login, Packet, PingReq, PingResp,
    Protocol, SubAck, SubscribeReasonCode, UnsubAck, UnsubAckReason, v4::V4, v5::V5,
};

use super::Metrics;
use super::acl;
use super::presence::PresenceQueue;
use super::principal::{Principal, Refusal, authenticate};
use super::registry::{Registry, Session};
use crate::auth::Tokens;

/// What a CONNECT with keep-alive 0 ("never time out") gets instead, in seconds; rumqttd
/// would refuse it without a CONNACK. AWS IoT does the same (1200 s).
pub const KEEP_ALIVE_FOR_ZERO: u16 = 1200;

/// Password prefix of the admission ticket the auth handler redeems.
pub(crate) const TICKET_PREFIX: &str = "velt-ticket:";

/// Any error other than `InsufficientBytes` makes rumqttd close the connection.
const CLOSE: ProtocolError = ProtocolError::InvalidProtocol;

/// What the wrappers of all connections share.
pub(crate) struct Shared {
    pub tokens: Arc<Tokens>,
    pub registry: Registry,
    pub presence: Arc<PresenceQueue>,
    pub metrics: Metrics,
    /// Tickets handed to rumqttd's auth handler, by number.
    pub tickets: Mutex<HashMap<u64, Arc<Session>>>,
    next_ticket: AtomicU64,
    /// Closes a live connection by client id (see `Broker::disconnect_device`).
    pub kicker: Box<dyn Fn(Arc<Session>) + Send + Sync>,
    /// True while ingest cannot take more (see `Broker::set_backpressure`).
    pub backpressure: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Shared {
    pub fn new(tokens: Arc<Tokens>, kicker: Box<dyn Fn(Arc<Session>) + Send + Sync>) -> Shared {
        Shared {
            tokens,
            registry: Registry::default(),
            presence: Arc::new(PresenceQueue::default()),
            metrics: Metrics::default(),
            tickets: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(1),
            kicker,
            backpressure: std::sync::OnceLock::new(),
        }
    }

    pub fn tickets(&self) -> MutexGuard<'_, HashMap<u64, Arc<Session>>> {
        self.tickets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V5,
}

/// What a PINGRESP from the router really answers.
#[derive(Debug)]
enum Ping {
    Ping,
    /// An UNSUBSCRIBE of only filters the router does not have: its UNSUBACK.
    Unsubscribe {
        pkid: u16,
        filters: usize,
    },
}

#[derive(Default)]
struct Connection {
    version: Option<Version>,
    connected: bool,
    client_id: String,
    session: Option<Arc<Session>>,
    ticket: Option<u64>,
    refused: Option<Refusal>,
    /// The CONNACK accepting it was written: registered, presence reported.
    online: bool,
    keep_alive_rewritten: bool,
    /// SUBSCRIBE pkid -> per original filter: allowed?
    pending_subacks: HashMap<u16, Vec<bool>>,
    /// Filters this connection has at the router (clean sessions only, so this starts
    /// empty).
    subscribed: HashSet<String>,
    pings: VecDeque<Ping>,
    /// UNSUBSCRIBE pkid -> (UNSUBACKs still to come from the router, per original filter:
    /// was it subscribed?). The router sends one UNSUBACK per removed filter.
    pending_unsubacks: HashMap<u16, (usize, Vec<bool>)>,
}

/// The per-connection `Protocol` wrapper (see the module docs).
pub(crate) struct Edge {
    shared: Arc<Shared>,
    // `write` takes `&self` and rumqttd's server future must be `Send + Sync`.
    connection: Mutex<Connection>,
}

impl Edge {
    pub fn new(shared: Arc<Shared>) -> Edge {
        Edge {
            shared,
            connection: Mutex::new(Connection::default()),
        }
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A clone is a new connection: fresh state, shared everything else.
impl Clone for Edge {
    fn clone(&self) -> Self {
        Edge::new(self.shared.clone())
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let connection = self
            .connection
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ticket) = connection.ticket.take() {
            self.shared.tickets().remove(&ticket);
        }
        if let (true, Some(session)) = (connection.online, connection.session.take()) {
            self.shared.registry.unregister(&session);
            if let Some(device_id) = session.principal.device_id() {
                self.shared.presence.disconnected(device_id);
            }
            tracing::debug!(client_id = %session.client_id, "MQTT connection closed");
        }
    }
}

/// The protocol level of a CONNECT at the start of `buf` (4: 3.1.1, 5: MQTT 5), or the
/// exact number of bytes still needed to see it.
fn protocol_level(buf: &[u8]) -> Result<u8, ProtocolError> {
    let need = |n: usize| Err(ProtocolError::InsufficientBytes(n - buf.len()));
    if buf.is_empty() {
        return need(1);
    }
    if buf[0] != 0x10 {
        return Err(ProtocolError::InvalidProtocol);
    }
    // Remaining length: 1 to 4 bytes, high bit = more.
    let mut pos = 1;
    loop {
        if pos > 4 {
            return Err(ProtocolError::MalformedRemainingLength);
        }
        let Some(byte) = buf.get(pos) else {
            return need(pos + 1);
        };
        pos += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    // Protocol name: u16 length + bytes ("MQTT"), then the level.
    if buf.len() < pos + 2 {
        return need(pos + 2);
    }
    let name_len = usize::from(u16::from_be_bytes([buf[pos], buf[pos + 1]]));
    let level_at = pos + 2 + name_len;
    match buf.get(level_at) {
        Some(level) => Ok(*level),
        None => need(level_at + 1),
    }
}

fn lossy(topic: &[u8]) -> String {
    String::from_utf8_lossy(&topic[..topic.len().min(acl::MAX_TOPIC_LEN)]).into_owned()
}

impl Edge {
    #[allow(clippy::too_many_lines)]
    fn on_connect(
        &mut self,
        connect: &mut rumqttd::protocol::Connect,
        will: &mut Option<LastWill>,
        login: &mut Option<Login>,
    ) -> Result<(), ProtocolError> {
        let shared = self.shared.clone();
        let connection = self
            .connection
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if connection.connected {
            return Err(CLOSE); // a second CONNECT on one connection
        }
        connection.connected = true;
        connection.client_id = connect.client_id.clone();
        if connect.keep_alive == 0 {
            connect.keep_alive = KEEP_ALIVE_FOR_ZERO;
            connection.keep_alive_rewritten = true;
        }
        // Clean sessions only: a restored session would bring back subscriptions the ACL
        // never saw (and may no longer allow).
        connect.clean_session = true;

        let outcome = authenticate(
            &shared.tokens,
            &connect.client_id,
            login.as_ref().map(|login| login.password.as_str()),
        )
        .and_then(|principal| match will.as_mut() {
            None => Ok(principal),
            Some(will) => {
                let allowed = std::str::from_utf8(&will.topic)
                    .is_ok_and(|topic| acl::may_publish(&principal, topic));
                if allowed {
                    will.retain = false;
                    Ok(principal)
                } else {
                    Err((
                        Refusal::NotAuthorized,
                        "will on a topic the client may not publish to",
                    ))
                }
            }
        });
        match outcome {
            Ok(principal) => {
                let session = Arc::new(Session::new(
                    connect.client_id.clone(),
                    principal,
                    shared.registry.generation(),
                ));
                let ticket = shared.next_ticket.fetch_add(1, Ordering::Relaxed);
                shared.tickets().insert(ticket, session.clone());
                if let Some(login) = login.as_mut() {
                    // The token has done its job; rumqttd only ever sees the ticket.
                    login.password = format!("{TICKET_PREFIX}{ticket}");
                }
                connection.ticket = Some(ticket);
                connection.session = Some(session);
            }
            Err((refusal, reason)) => {
                shared.metrics.count(&shared.metrics.connections_refused);
                tracing::warn!(client_id = %connect.client_id, reason, "MQTT connection refused");
                connection.refused = Some(refusal);
                // rumqttd answers this with CONNACK "client identifier not valid" and
                // closes; `write` puts the real code in.
                connect.client_id.clear();
                connect.clean_session = false;
                *will = None;
                // rumqttd refuses a CONNECT without login before its auth handler (which
                // lets this one through to that CONNACK) is even asked.
                login.get_or_insert_with(|| Login {
                    username: String::new(),
                    password: String::new(),
                });
            }
        }
        Ok(())
    }

    fn refuse(&self, client_id: &str, what: &'static str, topic: &str) {
        tracing::warn!(%client_id, topic, "MQTT {what} refused");
    }
}

impl Protocol for Edge {
    fn read_mut(
        &mut self,
        stream: &mut BytesMut,
        max_size: usize,
    ) -> Result<Packet, ProtocolError> {
        let version = {
            let connection = self
                .connection
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if connection
                .session
                .as_ref()
                .is_some_and(|session| session.is_cancelled())
            {
                return Err(CLOSE);
            }
            // Backpressure: leave a device's PUBLISH unread while ingest is saturated.
            // rumqttd then waits for more bytes (the next packet, a PINGREQ, or an ack
            // written to this client re-polls the read); the client's QoS 1 window fills
            // and it stops sending. Nothing is consumed, so nothing is lost.
            let device = connection
                .session
                .as_ref()
                .is_some_and(|s| s.principal.device_id().is_some());
            if device
                && stream.first().is_some_and(|byte| byte >> 4 == 3)
                && self
                    .shared
                    .backpressure
                    .get()
                    .is_some_and(|saturated| saturated())
            {
                self.shared
                    .metrics
                    .backpressure_stalls
                    .fetch_add(1, Ordering::Relaxed);
                return Err(ProtocolError::InsufficientBytes(1));
            }
            match connection.version {
                Some(version) => version,
                None => {
                    let version = match protocol_level(stream)? {
                        5 => Version::V5,
                        _ => Version::V4, // V4 rejects anything but level 4 itself
                    };
                    connection.version = Some(version);
                    version
                }
            }
        };
        let mut packet = match version {
            Version::V4 => V4.read_mut(stream, max_size)?,
            Version::V5 => V5.read_mut(stream, max_size)?,
        };
        if let Packet::Connect(connect, _, will, _, login) = &mut packet {
            self.on_connect(connect, will, login)?;
            return Ok(packet);
        }

        let shared = self.shared.clone();
        let connection = self
            .connection
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(session) = connection.session.clone() else {
            return Err(CLOSE);
        };
        let metrics = &shared.metrics;
        match &mut packet {
            Packet::Publish(publish, properties) => {
                let topic = std::str::from_utf8(&publish.topic).ok();
                let aliased = properties
                    .as_ref()
                    .is_some_and(|properties| properties.topic_alias.is_some());
                let allowed = !aliased
                    && topic.is_some_and(|topic| acl::may_publish(&session.principal, topic));
                if !allowed {
                    metrics.count(&metrics.publishes_refused);
                    let what = if aliased {
                        "PUBLISH with topic alias"
                    } else {
                        "PUBLISH"
                    };
                    self.refuse(&session.client_id, what, &lossy(&publish.topic));
                    return Err(CLOSE);
                }
                // Retained messages would outlive the device (and be replayed to a
                // later owner of a reused id).
                publish.retain = false;
            }
            Packet::Subscribe(subscribe, _) => {
                let owned = session.owned();
                let mask: Vec<bool> = subscribe
                    .filters
                    .iter()
                    .map(|filter| acl::may_subscribe(&session.principal, owned, &filter.path))
                    .collect();
                for (filter, allowed) in subscribe.filters.iter().zip(&mask) {
                    if *allowed {
                        connection.subscribed.insert(filter.path.clone());
                    } else {
                        metrics.count(&metrics.subscriptions_refused);
                        tracing::warn!(client_id = %session.client_id, topic = %lossy(filter.path.as_bytes()), "MQTT SUBSCRIBE refused");
                    }
                }
                if mask.iter().any(|allowed| !allowed) {
                    let mut allowed = mask.iter();
                    subscribe
                        .filters
                        .retain(|_| allowed.next().copied().unwrap_or(false));
                    connection.pending_subacks.insert(subscribe.pkid, mask);
                }
            }
            Packet::Unsubscribe(unsubscribe, _) => {
                let was_subscribed: Vec<bool> = unsubscribe
                    .filters
                    .iter()
                    .map(|filter| connection.subscribed.contains(filter))
                    .collect();
                let mut kept: Vec<String> = Vec::new();
                for filter in &unsubscribe.filters {
                    if connection.subscribed.remove(filter) {
                        kept.push(filter.clone());
                    }
                }
                if kept.is_empty() {
                    metrics.count(&metrics.unsubacks_synthesized);
                    connection.pings.push_back(Ping::Unsubscribe {
                        pkid: unsubscribe.pkid,
                        filters: unsubscribe.filters.len(),
                    });
                    return Ok(Packet::PingReq(PingReq));
                }
                connection
                    .pending_unsubacks
                    .insert(unsubscribe.pkid, (kept.len(), was_subscribed));
                unsubscribe.filters = kept;
            }
            Packet::PingReq(_) => connection.pings.push_back(Ping::Ping),
            _ => {}
        }
        Ok(packet)
    }

    fn write(&self, packet: Packet, buf: &mut BytesMut) -> Result<usize, ProtocolError> {
        let mut connection = self.connection();
        if connection
            .session
            .as_ref()
            .is_some_and(|session| session.is_cancelled())
        {
            return Err(CLOSE);
        }
        let version = connection.version.unwrap_or(Version::V4);
        let packet = match packet {
            Packet::ConnAck(_, _) if connection.refused.is_some() => {
                let code = match connection.refused {
                    Some(Refusal::BadCredentials) => ConnectReturnCode::BadUserNamePassword,
                    _ => ConnectReturnCode::NotAuthorized,
                };
                Packet::ConnAck(
                    ConnAck {
                        session_present: false,
                        code,
                    },
                    None,
                )
            }
            Packet::ConnAck(ack, mut properties) if ack.code == ConnectReturnCode::Success => {
                if let Some(session) = connection.session.clone() {
                    self.accept(&mut connection, &session);
                }
                if let Some(properties) = properties.as_mut() {
                    // Aliased PUBLISHes would hide their topic from the ACL.
                    properties.topic_alias_max = None;
                    if connection.keep_alive_rewritten {
                        properties.server_keep_alive = Some(KEEP_ALIVE_FOR_ZERO);
                    }
                }
                Packet::ConnAck(ack, properties)
            }
            Packet::SubAck(suback, properties) => {
                match connection.pending_subacks.remove(&suback.pkid) {
                    None => Packet::SubAck(suback, properties),
                    Some(mask) => {
                        // v4 has only 0x80; rumqttd's v4 encoder would write v5 codes as is.
                        let refused = match version {
                            Version::V5 => SubscribeReasonCode::NotAuthorized,
                            Version::V4 => SubscribeReasonCode::Failure,
                        };
                        let mut granted = suback.return_codes.into_iter();
                        let return_codes = mask
                            .iter()
                            .map(|allowed| {
                                if *allowed {
                                    granted.next().unwrap_or(refused)
                                } else {
                                    refused
                                }
                            })
                            .collect();
                        Packet::SubAck(
                            SubAck {
                                pkid: suback.pkid,
                                return_codes,
                            },
                            properties,
                        )
                    }
                }
            }
            Packet::UnsubAck(unsuback, properties) => {
                let pkid = unsuback.pkid;
                match connection.pending_unsubacks.get_mut(&pkid) {
                    None => Packet::UnsubAck(unsuback, properties),
                    Some((remaining, _)) if *remaining > 1 => {
                        // One UNSUBACK per removed filter from the router; the client
                        // gets one for the packet, after the last.
                        *remaining -= 1;
                        return Ok(0);
                    }
                    Some(_) => {
                        let (_, was_subscribed) = connection
                            .pending_unsubacks
                            .remove(&pkid)
                            .unwrap_or_default();
                        let reasons = was_subscribed
                            .into_iter()
                            .map(|subscribed| {
                                if subscribed {
                                    UnsubAckReason::Success
                                } else {
                                    UnsubAckReason::NoSubscriptionExisted
                                }
                            })
                            .collect();
                        Packet::UnsubAck(UnsubAck { pkid, reasons }, properties)
                    }
                }
            }
            Packet::PingResp(_) => match connection.pings.pop_front() {
                Some(Ping::Unsubscribe { pkid, filters }) => Packet::UnsubAck(
                    UnsubAck {
                        pkid,
                        reasons: vec![UnsubAckReason::NoSubscriptionExisted; filters],
                    },
                    None,
                ),
                _ => Packet::PingResp(PingResp),
            },
            other => other,
        };
        drop(connection);
        match version {
            Version::V4 => V4.write(packet, buf),
            Version::V5 => V5.write(packet, buf),
        }
    }
}

impl Edge {
    /// The router accepted the connection: register it, report presence, and close it
    /// again at once if it was revoked while being admitted.
    fn accept(&self, connection: &mut Connection, session: &Arc<Session>) {
        let shared = &self.shared;
        connection.online = true;
        let fresh = shared.registry.register(session);
        if let Some(device_id) = session.principal.device_id() {
            shared.presence.connected(device_id);
        }
        shared.metrics.count(&shared.metrics.connections_accepted);
        let principal = match &session.principal {
            Principal::Device { .. } => "device",
            Principal::User { .. } => "user",
            Principal::Service { .. } => "service",
        };
        tracing::info!(client_id = %session.client_id, principal, "MQTT connection accepted");
        if !fresh || !session.admitted.load(Ordering::SeqCst) {
            tracing::warn!(client_id = %session.client_id, "MQTT connection revoked while connecting; closing it");
            (shared.kicker)(session.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_level_is_read_from_partial_connects() {
        // v4 CONNECT: 10 LL 00 04 'M' 'Q' 'T' 'T' 04 ...
        let v4 = [0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02];
        for n in 0..9 {
            match protocol_level(&v4[..n]) {
                Err(ProtocolError::InsufficientBytes(more)) => {
                    assert!(
                        n + more <= 9,
                        "asks for no byte past the level ({n}+{more})"
                    )
                }
                other => panic!("{n}: {other:?}"),
            }
        }
        assert_eq!(protocol_level(&v4).unwrap(), 4);
        let v5 = [0x10, 0x80, 0x01, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05];
        assert_eq!(protocol_level(&v5).unwrap(), 5);
        assert!(protocol_level(&[0x30, 0x00]).is_err());
        assert!(protocol_level(&[0x10, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    }
}
