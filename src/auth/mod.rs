//! Credentials: password hashing and the password rule ([`password`]), and the JWTs velt
//! issues and verifies ([`token`]): user access and refresh tokens, device and service
//! tokens. Knows nothing of HTTP or MQTT; both edges use it.

pub mod password;
pub mod token;

pub use token::{Access, AclRule, Claims, Kind, Tokens};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    InvalidToken,
    #[error("signing failed: {0}")]
    Signing(jsonwebtoken::errors::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("password hashing task ended abnormally")]
    HashingTask,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The [`Tokens`] the server signs with, for command-line tools (`velt token`): the
/// `--jwt-secret`, else the secret kept in the data directory (created on first use),
/// with every configured lifetime.
pub fn configured_tokens(config: &crate::Config) -> anyhow::Result<Tokens> {
    let secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => {
            std::fs::create_dir_all(&config.data_dir)?;
            crate::app::load_or_create_secret(&config.data_dir)?
        }
    };
    let tokens = Tokens::new(
        secret.expose().as_bytes(),
        config.access_token_ttl,
        config.refresh_token_ttl,
    )?;
    Ok(tokens.with_device_ttl(config.device_token_ttl))
}
