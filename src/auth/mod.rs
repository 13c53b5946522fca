//! Credentials: password hashing and the password rule ([`password`]), and the JWTs velt
//! issues and verifies ([`token`]). Knows nothing of HTTP or MQTT; both edges use it.

pub mod password;
pub mod token;

pub use token::{Claims, Kind, Tokens};

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
