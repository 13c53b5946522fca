//! Who is on the other end of an MQTT connection, and how a CONNECT proves it.
//!
//! The client id names the principal and the password is a velt JWT for exactly that
//! principal:
//!
//! | client id | password | principal |
//! | --- | --- | --- |
//! | `dev-{device_id}` | device token | the device |
//! | `user-{user_id}` or `user-{user_id}-{suffix}` | access token | an app user |
//! | `svc-{name}` or `svc-{name}-{suffix}` | service token | an integration |
//!
//! Binding the client id to the token matters: rumqttd drops the older of two
//! connections with the same client id, so an unbound id would let any client kick any
//! other. Ids starting with `velt-` are velt's own in-process links and never accepted
//! from the network. This module only does what needs no database (signature, expiry,
//! kind, binding); revocation and ownership are checked against a [`Directory`].

use std::collections::HashSet;

use futures_util::future::BoxFuture;

use crate::auth::{AclRule, Kind, Tokens};

/// Prefix of client ids reserved for velt's in-process links.
pub const INTERNAL_PREFIX: &str = "velt-";

/// An authenticated MQTT client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Device {
        device_id: i64,
        owner: i64,
        token_version: i64,
    },
    User {
        user_id: i64,
    },
    Service {
        name: String,
        acl: Vec<AclRule>,
    },
}

impl Principal {
    /// The device id, for device principals.
    pub fn device_id(&self) -> Option<i64> {
        match self {
            Principal::Device { device_id, .. } => Some(*device_id),
            _ => None,
        }
    }
}

/// Why a CONNECT is refused; decides the CONNACK code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The password is not a valid token (v4 0x04, v5 0x86).
    BadCredentials,
    /// A valid token, but not for this client id, or no password at all (v4 0x05,
    /// v5 0x87).
    NotAuthorized,
}

/// The principal a client id claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimedId<'a> {
    Device(i64),
    User(i64),
    Service(&'a str),
    /// `velt-…`: reserved for in-process links.
    Internal,
    /// Matches no pattern.
    Unknown,
}

/// Positive canonical decimal (no sign, no leading zero), as the store's ids are.
fn parse_id(s: &str) -> Option<i64> {
    match s.as_bytes() {
        [b'1'..=b'9', rest @ ..] if rest.iter().all(u8::is_ascii_digit) => s.parse().ok(),
        _ => None,
    }
}

fn is_valid_suffix(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `{head}` or `{head}-{suffix}`: the head; it contains no `-` itself.
fn split_suffix(rest: &str) -> Option<&str> {
    match rest.split_once('-') {
        None => Some(rest),
        Some((head, suffix)) if is_valid_suffix(suffix) => Some(head),
        Some(_) => None,
    }
}

/// What principal `client_id` claims to be.
pub fn parse_client_id(client_id: &str) -> ClaimedId<'_> {
    if client_id.starts_with(INTERNAL_PREFIX) {
        return ClaimedId::Internal;
    }
    if let Some(id) = client_id.strip_prefix("dev-") {
        return parse_id(id).map_or(ClaimedId::Unknown, ClaimedId::Device);
    }
    if let Some(rest) = client_id.strip_prefix("user-") {
        return split_suffix(rest)
            .and_then(parse_id)
            .map_or(ClaimedId::Unknown, ClaimedId::User);
    }
    if let Some(rest) = client_id.strip_prefix("svc-") {
        return split_suffix(rest)
            .filter(|name| crate::auth::token::is_valid_service_name(name))
            .map_or(ClaimedId::Unknown, ClaimedId::Service);
    }
    ClaimedId::Unknown
}

/// Checks a CONNECT's client id and password without the database. The second element
/// of the error is a reason fit for a log line (never the password).
pub fn authenticate(
    tokens: &Tokens,
    client_id: &str,
    password: Option<&str>,
) -> Result<Principal, (Refusal, &'static str)> {
    let claimed = parse_client_id(client_id);
    let kind = match claimed {
        ClaimedId::Internal => return Err((Refusal::NotAuthorized, "reserved client id")),
        ClaimedId::Unknown => return Err((Refusal::NotAuthorized, "unknown client id form")),
        ClaimedId::Device(_) => Kind::Device,
        ClaimedId::User(_) => Kind::Access,
        ClaimedId::Service(_) => Kind::Service,
    };
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err((Refusal::NotAuthorized, "no password"));
    };
    let claims = tokens.verify(password, kind).map_err(|err| match err {
        crate::auth::Error::Expired => (Refusal::BadCredentials, "token expired"),
        _ => (Refusal::BadCredentials, "invalid token"),
    })?;
    let mismatch = (Refusal::NotAuthorized, "token is for another client id");
    match claimed {
        ClaimedId::Device(id) => {
            let device_id = claims.device_id().map_err(|_| mismatch)?;
            match (device_id == id, claims.own, claims.ver) {
                (true, Some(owner), Some(token_version)) => Ok(Principal::Device {
                    device_id,
                    owner,
                    token_version,
                }),
                _ => Err(mismatch),
            }
        }
        ClaimedId::User(id) => match claims.user_id() {
            Ok(user_id) if user_id == id => Ok(Principal::User { user_id }),
            _ => Err(mismatch),
        },
        ClaimedId::Service(name) if claims.sub == name => Ok(Principal::Service {
            name: claims.sub,
            acl: claims.acl.unwrap_or_default(),
        }),
        _ => Err(mismatch),
    }
}

/// A device as the broker needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRecord {
    pub owner: i64,
    pub token_version: i64,
}

/// Error of a [`Directory`] lookup.
pub type DirectoryError = Box<dyn std::error::Error + Send + Sync>;

/// The lookups the broker makes while admitting a connection (async, after the token
/// checked out). Implemented for [`Store`](crate::store::Store); tests may fake it.
pub trait Directory: Send + Sync + 'static {
    /// The device with this id, whoever owns it; `None` if it does not exist (deleted).
    fn device(&self, id: i64) -> BoxFuture<'_, Result<Option<DeviceRecord>, DirectoryError>>;
    /// Ids of the devices `user_id` owns.
    fn devices_of_user(&self, user_id: i64) -> BoxFuture<'_, Result<Vec<i64>, DirectoryError>>;
}

impl Directory for crate::store::Store {
    fn device(&self, id: i64) -> BoxFuture<'_, Result<Option<DeviceRecord>, DirectoryError>> {
        Box::pin(async move {
            Ok(self.device_by_id(id).await?.map(|device| DeviceRecord {
                owner: device.user_id,
                token_version: device.token_version,
            }))
        })
    }

    fn devices_of_user(&self, user_id: i64) -> BoxFuture<'_, Result<Vec<i64>, DirectoryError>> {
        Box::pin(async move {
            Ok(self
                .devices_of(user_id)
                .await?
                .into_iter()
                .map(|device| device.id)
                .collect())
        })
    }
}

/// Devices a user principal may watch, collected while admitting it.
pub(crate) type Owned = HashSet<i64>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(b"secret", Duration::from_secs(60), Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn client_ids_name_one_principal() {
        assert_eq!(parse_client_id("dev-5"), ClaimedId::Device(5));
        assert_eq!(parse_client_id("user-7"), ClaimedId::User(7));
        assert_eq!(parse_client_id("user-7-phone.2"), ClaimedId::User(7));
        assert_eq!(
            parse_client_id("svc-grafana"),
            ClaimedId::Service("grafana")
        );
        assert_eq!(
            parse_client_id("svc-grafana-1"),
            ClaimedId::Service("grafana")
        );
        assert_eq!(parse_client_id("velt-ingest"), ClaimedId::Internal);
        for unknown in [
            "",
            "dev-",
            "dev-05",
            "dev-0",
            "dev-5-x",
            "dev-+5",
            "user-",
            "user-x",
            "user-7-",
            "user-7-a/b",
            "svc-",
            "svc--x",
            "svc-a b",
            "mosquitto",
            "DEV-5",
        ] {
            assert_eq!(parse_client_id(unknown), ClaimedId::Unknown, "{unknown:?}");
        }
    }

    #[test]
    fn tokens_must_match_the_client_id_and_kind() {
        let tokens = tokens();
        let device = tokens.issue_device(5, 1, 2).unwrap().token;
        assert_eq!(
            authenticate(&tokens, "dev-5", Some(&device)),
            Ok(Principal::Device {
                device_id: 5,
                owner: 1,
                token_version: 2
            })
        );
        assert_eq!(
            authenticate(&tokens, "dev-6", Some(&device)).unwrap_err().0,
            Refusal::NotAuthorized
        );
        assert_eq!(
            authenticate(&tokens, "user-5", Some(&device))
                .unwrap_err()
                .0,
            Refusal::BadCredentials
        );
        let access = tokens.issue_access(1).unwrap().token;
        assert!(authenticate(&tokens, "user-1-phone", Some(&access)).is_ok());
        assert!(authenticate(&tokens, "user-2", Some(&access)).is_err());
        assert!(authenticate(&tokens, "dev-1", Some(&access)).is_err());
        let refresh = tokens.issue_refresh(1, "fam").unwrap().token;
        assert!(authenticate(&tokens, "user-1", Some(&refresh)).is_err());
        let service = tokens
            .issue_service("ing", vec![], Duration::from_secs(60))
            .unwrap()
            .token;
        assert!(authenticate(&tokens, "svc-ing-a", Some(&service)).is_ok());
        assert!(authenticate(&tokens, "svc-other", Some(&service)).is_err());
        assert_eq!(
            authenticate(&tokens, "velt-ingest", Some(&service))
                .unwrap_err()
                .0,
            Refusal::NotAuthorized
        );
        assert_eq!(
            authenticate(&tokens, "dev-5", None).unwrap_err().0,
            Refusal::NotAuthorized
        );
    }
}
