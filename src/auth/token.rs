//! The JWTs velt signs (HS256): short-lived access tokens and rotating refresh tokens for
//! app users, long-lived device tokens (a sensor's MQTT password, revoked by bumping the
//! device's token version) and service tokens carrying their own topic ACL (minted by
//! `velt token`). The MQTT edge verifies all of them.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{Error, Result};

const ISSUER: &str = "velt";

/// What a token may be used for; checked on every verification, so a refresh token is
/// never accepted where an access token is expected and vice versa.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Access,
    Refresh,
    /// A sensor's MQTT password: `sub` is the device id, `own` its owner, `ver` the
    /// device's token version when issued.
    Device,
    /// An integration's MQTT password: `sub` is the service name, `acl` its topic rules.
    Service,
}

/// What an [`AclRule`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// PUBLISH to topics matching the filter.
    Pub,
    /// SUBSCRIBE to filters the rule's filter covers.
    Sub,
}

/// One rule of a service token's ACL, EMQX-style:
/// `{"allow": "sub", "filter": "velt/devices/+/telemetry"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub allow: Access,
    /// An MQTT topic filter; `+` and `#` are allowed.
    pub filter: String,
}

impl std::str::FromStr for AclRule {
    type Err = String;

    /// `pub:<filter>` or `sub:<filter>`, the form `velt token --acl` takes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (allow, filter) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected pub:<filter> or sub:<filter>"))?;
        let allow = match allow {
            "pub" => Access::Pub,
            "sub" => Access::Sub,
            other => return Err(format!("{other:?}: expected pub or sub")),
        };
        if filter.is_empty() {
            return Err(format!("{s:?}: empty filter"));
        }
        Ok(AclRule {
            allow,
            filter: filter.to_owned(),
        })
    }
}

/// The claims of every velt token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id or device id in decimal, or the service name.
    pub sub: String,
    pub typ: Kind,
    /// Issued at / expires at, seconds since the epoch.
    pub iat: i64,
    pub exp: i64,
    /// Unique token id (refresh tokens: the row in `refresh_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Refresh tokens: the family (one login's chain of rotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
    /// Device tokens: the owner's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<i64>,
    /// Device tokens: the device's token version when issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ver: Option<i64>,
    /// Service tokens: what the service may publish and subscribe to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<AclRule>>,
}

impl Claims {
    pub fn user_id(&self) -> Result<i64> {
        self.sub.parse().map_err(|_| Error::InvalidToken)
    }

    /// Device tokens: the device id in `sub`.
    pub fn device_id(&self) -> Result<i64> {
        self.user_id()
    }
}

/// Service names: 1–64 of `[A-Za-z0-9_.]`. No `-`, so that a client id
/// `svc-{name}-{suffix}` names exactly one service.
pub fn is_valid_service_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// A freshly signed token and when it lapses.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
    device_ttl: Duration,
}

/// Lifetime of device tokens unless [`Tokens::with_device_ttl`] says otherwise.
pub const DEFAULT_DEVICE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("device_ttl", &self.device_ttl)
            .finish_non_exhaustive()
    }
}

/// 128 random bits in hex: token ids and family ids.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Tokens {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Result<Self> {
        let encoding = EncodingKey::from_secret(secret).map_err(Error::Signing)?;
        let decoding = DecodingKey::from_secret(secret).map_err(Error::Signing)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Expiry is exact: the lifetimes are the contract.
        validation.leeway = 0;
        Ok(Self {
            encoding,
            decoding,
            validation,
            access_ttl,
            refresh_ttl,
            device_ttl: DEFAULT_DEVICE_TTL,
        })
    }

    /// Sets the lifetime of device tokens (default [`DEFAULT_DEVICE_TTL`]).
    pub fn with_device_ttl(mut self, device_ttl: Duration) -> Self {
        self.device_ttl = device_ttl;
        self
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn device_ttl(&self) -> Duration {
        self.device_ttl
    }

    /// A device's MQTT password. `version` is the device's current `token_version`;
    /// bumping it in the database revokes every token issued before.
    pub fn issue_device(&self, device_id: i64, owner: i64, version: i64) -> Result<Issued> {
        let mut claims = self.claims(device_id.to_string(), Kind::Device, self.device_ttl);
        claims.own = Some(owner);
        claims.ver = Some(version);
        self.encode(claims)
    }

    /// A service's MQTT password with its own ACL. Such tokens cannot be revoked one by
    /// one (only by changing the JWT secret): keep `ttl` short.
    pub fn issue_service(&self, name: &str, acl: Vec<AclRule>, ttl: Duration) -> Result<Issued> {
        if !is_valid_service_name(name) {
            return Err(Error::InvalidToken);
        }
        let mut claims = self.claims(name.to_owned(), Kind::Service, ttl);
        claims.acl = Some(acl);
        self.encode(claims)
    }

    pub fn issue_access(&self, user_id: i64) -> Result<Issued> {
        self.sign(user_id, Kind::Access, self.access_ttl, None, None)
    }

    /// A refresh token in `family`; its `jti` must be recorded before it is handed out.
    pub fn issue_refresh(&self, user_id: i64, family: &str) -> Result<Issued> {
        self.sign(
            user_id,
            Kind::Refresh,
            self.refresh_ttl,
            Some(random_id()),
            Some(family.to_owned()),
        )
    }

    fn sign(
        &self,
        user_id: i64,
        typ: Kind,
        ttl: Duration,
        jti: Option<String>,
        fam: Option<String>,
    ) -> Result<Issued> {
        let mut claims = self.claims(user_id.to_string(), typ, ttl);
        claims.jti = jti;
        claims.fam = fam;
        self.encode(claims)
    }

    fn claims(&self, sub: String, typ: Kind, ttl: Duration) -> Claims {
        let iat = chrono::Utc::now().timestamp();
        Claims {
            iss: ISSUER.to_owned(),
            sub,
            typ,
            iat,
            exp: iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: None,
            fam: None,
            own: None,
            ver: None,
            acl: None,
        }
    }

    fn encode(&self, claims: Claims) -> Result<Issued> {
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::Signing)?;
        Ok(Issued { token, claims })
    }

    /// Verifies signature, issuer, expiry and kind.
    pub fn verify(&self, token: &str, kind: Kind) -> Result<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => Error::Expired,
                _ => Error::InvalidToken,
            })?;
        if data.claims.typ != kind {
            return Err(Error::InvalidToken);
        }
        // Each kind's own claims must be there, so callers can rely on them.
        let complete = match kind {
            Kind::Access | Kind::Refresh => true,
            Kind::Device => {
                data.claims.own.is_some()
                    && data.claims.ver.is_some()
                    && data.claims.device_id().is_ok()
            }
            Kind::Service => data.claims.acl.is_some() && is_valid_service_name(&data.claims.sub),
        };
        if !complete {
            return Err(Error::InvalidToken);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(access_ttl: Duration) -> Tokens {
        Tokens::new(b"test-secret", access_ttl, Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn access_tokens_round_trip_and_are_not_refresh_tokens() {
        let tokens = tokens(Duration::from_secs(60));
        let issued = tokens.issue_access(42).unwrap();
        let claims = tokens.verify(&issued.token, Kind::Access).unwrap();
        assert_eq!(claims.user_id().unwrap(), 42);
        assert!(matches!(
            tokens.verify(&issued.token, Kind::Refresh),
            Err(Error::InvalidToken)
        ));
    }

    #[test]
    fn refresh_tokens_carry_id_and_family() {
        let tokens = tokens(Duration::from_secs(60));
        let issued = tokens.issue_refresh(7, "fam").unwrap();
        let claims = tokens.verify(&issued.token, Kind::Refresh).unwrap();
        assert_eq!(claims.fam.as_deref(), Some("fam"));
        assert_eq!(claims.jti.as_ref().map(String::len), Some(32));
    }

    #[test]
    fn device_tokens_carry_owner_and_version_and_are_no_other_kind() {
        let tokens = tokens(Duration::from_secs(60)).with_device_ttl(Duration::from_secs(3600));
        let issued = tokens.issue_device(5, 7, 3).unwrap();
        let claims = tokens.verify(&issued.token, Kind::Device).unwrap();
        assert_eq!(claims.device_id().unwrap(), 5);
        assert_eq!((claims.own, claims.ver), (Some(7), Some(3)));
        assert_eq!(claims.exp - claims.iat, 3600);
        for kind in [Kind::Access, Kind::Refresh, Kind::Service] {
            assert!(tokens.verify(&issued.token, kind).is_err(), "{kind:?}");
        }
        let access = tokens.issue_access(5).unwrap().token;
        assert!(tokens.verify(&access, Kind::Device).is_err());
    }

    #[test]
    fn service_tokens_carry_their_acl() {
        let tokens = tokens(Duration::from_secs(60));
        let acl: Vec<AclRule> = ["sub:velt/devices/+/telemetry", "pub:velt/devices/+/ack"]
            .iter()
            .map(|rule| rule.parse().unwrap())
            .collect();
        let issued = tokens
            .issue_service("grafana", acl.clone(), Duration::from_secs(60))
            .unwrap();
        let claims = tokens.verify(&issued.token, Kind::Service).unwrap();
        assert_eq!(claims.sub, "grafana");
        assert_eq!(claims.acl, Some(acl));
        assert!(tokens.verify(&issued.token, Kind::Device).is_err());
        assert!(
            tokens
                .issue_service("bad-name", vec![], Duration::from_secs(60))
                .is_err()
        );
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(
            json["acl"][0],
            serde_json::json!({"allow": "sub", "filter": "velt/devices/+/telemetry"})
        );
        assert!("get:x".parse::<AclRule>().is_err());
        assert!("pub:".parse::<AclRule>().is_err());
        assert!("nofilter".parse::<AclRule>().is_err());
    }

    #[test]
    fn foreign_signatures_and_garbage_are_invalid_and_expiry_is_told_apart() {
        let other = Tokens::new(
            b"other-secret",
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
        .unwrap();
        let token = other.issue_access(1).unwrap().token;
        assert!(matches!(
            tokens(Duration::from_secs(60)).verify(&token, Kind::Access),
            Err(Error::InvalidToken)
        ));
        assert!(matches!(
            tokens(Duration::from_secs(60)).verify("not.a.jwt", Kind::Access),
            Err(Error::InvalidToken)
        ));
        let expired = tokens(Duration::ZERO);
        let token = expired.issue_access(1).unwrap().token;
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(
            expired.verify(&token, Kind::Access),
            Err(Error::Expired)
        ));
    }
}
