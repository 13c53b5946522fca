//! `/auth`: register, login, refresh (rotating refresh tokens), logout, me.

use std::net::{IpAddr, SocketAddr};

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{StatusCode, request::Parts},
    response::IntoResponse,
};
use governor::clock::{Clock, DefaultClock};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    AppState, Error, ErrorBody, Result,
    extract::{AuthUser, Json, bearer_token, parse_json},
};
use crate::{
    auth::{Kind, password, token::random_id},
    store::{self, Rotation, User},
    timestamp::{now_us, serde_rfc3339},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com")]
    email: Option<String>,
    /// At least 8 characters with a letter, a digit and a symbol.
    #[schema(example = "s3cret-pass")]
    password: Option<String>,
    #[schema(example = "ada")]
    username: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    email: Option<String>,
    password: Option<String>,
}

/// Optional body of refresh and logout: the refresh token, when not sent as Bearer.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    id: i64,
    email: String,
    username: String,
    locale: String,
    units: String,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    last_login_at: Option<i64>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            id: user.id,
            email: user.email,
            username: user.username,
            locale: user.locale,
            units: user.units,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
        }
    }
}

/// A fresh access + refresh token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    access_token: String,
    refresh_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    #[serde(flatten)]
    tokens: TokenPair,
    user: UserView,
}

/// Issues an access token and a refresh token in `family` (a new family: a new login).
async fn issue_pair(state: &AppState, user_id: i64, family: Option<String>) -> Result<TokenPair> {
    let family = family.unwrap_or_else(random_id);
    let access = state.tokens.issue_access(user_id)?;
    let refresh = state.tokens.issue_refresh(user_id, &family)?;
    let jti = refresh.claims.jti.as_deref().unwrap_or_default();
    let expires_at = refresh.claims.exp.saturating_mul(1_000_000);
    state
        .store
        .insert_refresh_token(jti, &family, user_id, now_us(), expires_at)
        .await?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: refresh.token,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl().as_secs(),
    })
}

/// Login and register are limited per client IP against password guessing.
fn check_rate(state: &AppState, ip: IpAddr) -> Result<()> {
    state.auth_limiter.check_key(&ip).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        Error::TooManyRequests {
            retry_after: wait.as_secs() + 1,
        }
    })
}

fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let valid = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then_some(email)
}

fn required(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Create a user and log them in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses(
        (status = 201, description = "User created", body = AuthResponse),
        (status = 400, description = "`email, password and username are required`, or malformed JSON", body = ErrorBody),
        (status = 409, description = "`email already registered` or `password too weak`", body = ErrorBody),
        (status = 422, description = "Invalid email, username or field type", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    ))]
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<RegisterRequest>,
) -> Result<impl IntoResponse> {
    check_rate(&state, peer.ip())?;
    let (Some(email), Some(password), Some(username)) = (
        required(body.email),
        required(body.password),
        required(body.username),
    ) else {
        return Err(Error::BadRequest(
            "email, password and username are required".into(),
        ));
    };
    let email = normalize_email(&email)
        .ok_or_else(|| Error::Unprocessable("email: not a valid email address".into()))?;
    let username = username.trim().to_owned();
    if username.chars().count() > 64 {
        return Err(Error::Unprocessable(
            "username: at most 64 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(Error::Unprocessable("password: at most 1024 bytes".into()));
    }
    if !password::is_strong(&password) {
        return Err(Error::Conflict("password too weak"));
    }
    let hash = password::hash(password).await?;
    let user = match state
        .store
        .insert_user(&email, &hash, &username, now_us())
        .await
    {
        Err(store::Error::Conflict) => return Err(Error::Conflict("email already registered")),
        other => other?,
    };
    let tokens = issue_pair(&state, user.id, None).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AuthResponse {
            tokens,
            user: user.into(),
        }),
    ))
}

/// Log in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = AuthResponse),
        (status = 400, description = "Missing fields or malformed JSON", body = ErrorBody),
        (status = 401, description = "`invalid credentials`", body = ErrorBody),
        (status = 422, description = "Wrong field type", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginRequest>,
) -> Result<axum::Json<AuthResponse>> {
    check_rate(&state, peer.ip())?;
    let (Some(email), Some(password)) = (required(body.email), required(body.password)) else {
        return Err(Error::BadRequest("email and password are required".into()));
    };
    let user = match normalize_email(&email) {
        Some(email) => state.store.user_by_email(&email).await?,
        None => None,
    };
    // Unknown users are checked against a dummy hash: same cost, same answer.
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    let (true, Some(mut user)) = (password::verify(password, stored).await?, user) else {
        return Err(Error::Unauthorized("invalid credentials"));
    };
    let now = now_us();
    state.store.record_login(user.id, now).await?;
    user.last_login_at = Some(now);
    let tokens = issue_pair(&state, user.id, None).await?;
    Ok(axum::Json(AuthResponse {
        tokens,
        user: user.into(),
    }))
}

/// The refresh token of a refresh or logout call: Bearer, else the JSON body.
fn presented_token(parts: &Parts, body: &Bytes) -> Result<String> {
    if let Some(token) = bearer_token(parts) {
        return Ok(token.to_owned());
    }
    let body: RefreshRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefreshRequest::default()
    } else {
        parse_json(body)?
    };
    body.refresh_token
        .filter(|t| !t.is_empty())
        .ok_or(Error::Unauthorized("missing refresh token"))
}

/// Exchange a refresh token for a new pair. The presented token is used up; presenting
/// it again revokes every token of its login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body(content = Option<RefreshRequest>, description = "Only when the refresh token is not sent as Bearer"),
    security(("refresh_token" = [])),
    responses(
        (status = 200, description = "New token pair", body = TokenPair),
        (status = 401, description = "Missing, invalid, expired, revoked or reused refresh token", body = ErrorBody),
    ))]
async fn refresh(
    State(state): State<AppState>,
    parts: Parts,
    body: Bytes,
) -> Result<axum::Json<TokenPair>> {
    let token = presented_token(&parts, &body)?;
    let claims = state.tokens.verify(&token, Kind::Refresh)?;
    let jti = claims.jti.ok_or(Error::Unauthorized("invalid token"))?;
    match state.store.rotate_refresh_token(&jti, now_us()).await? {
        Rotation::Rotated { user_id, family_id } => Ok(axum::Json(
            issue_pair(&state, user_id, Some(family_id)).await?,
        )),
        Rotation::Reused => {
            tracing::warn!(user_id = %claims.sub, "refresh token reused: its family is revoked");
            Err(Error::Unauthorized("refresh token reused, log in again"))
        }
        Rotation::Invalid => Err(Error::Unauthorized("invalid token")),
    }
}

/// Log out: a refresh token revokes its login; an access token revokes every login of
/// the user.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body(content = Option<RefreshRequest>, description = "Only when no token is sent as Bearer"),
    security(("bearer" = []), ("refresh_token" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
async fn logout(State(state): State<AppState>, parts: Parts, body: Bytes) -> Result<StatusCode> {
    let token = presented_token(&parts, &body)?;
    let now = now_us();
    if let Ok(claims) = state.tokens.verify(&token, Kind::Access) {
        state
            .store
            .revoke_user_tokens(claims.user_id()?, now)
            .await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let claims = state.tokens.verify(&token, Kind::Refresh)?;
    let jti = claims.jti.as_deref().unwrap_or_default();
    if let Some(family) = state
        .store
        .live_token_family(jti, claims.user_id()?, now)
        .await?
    {
        state.store.revoke_token_family(&family, now).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<axum::Json<UserView>> {
    let user = state
        .store
        .user_by_id(user.id)
        .await?
        .ok_or(Error::Unauthorized("invalid token"))?;
    Ok(axum::Json(user.into()))
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").as_deref(),
            Some("ada@example.com")
        );
        for bad in [
            "ada",
            "@example.com",
            "ada@example",
            "ada@.com",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }
}
