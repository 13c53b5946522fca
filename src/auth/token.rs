//! The JWTs velt signs (HS256): short-lived access tokens and rotating refresh tokens for
//! app users. The MQTT edge verifies the same tokens.

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
}

/// The claims of every velt token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id, in decimal.
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
}

impl Claims {
    pub fn user_id(&self) -> Result<i64> {
        self.sub.parse().map_err(|_| Error::InvalidToken)
    }
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
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
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
        })
    }

    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
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
        let iat = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: user_id.to_string(),
            typ,
            iat,
            exp: iat + ttl.as_secs() as i64,
            jti,
            fam,
        };
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
