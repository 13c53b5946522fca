//! The REST side of a sensor's life, as the phone app does it: an account, pairing
//! (`POST /api/v1/devices` answers with the device's MQTT credentials), sessions.

use std::sync::Arc;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::creds::{CredsFile, DeviceCreds};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("{method} {path}: HTTP {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{path}: unexpected answer: {what}")]
    Unexpected { path: String, what: &'static str },
    #[error("not logged in")]
    NotLoggedIn,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A REST client for one account.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// `url` is the server (`http://127.0.0.1:8080`) or its API root (`…/api/v1`).
    pub fn new(url: &str) -> Api {
        let url = url.trim_end_matches('/');
        let base = if url.ends_with("/api/v1") {
            url.to_owned()
        } else {
            format!("{url}/api/v1")
        };
        Api {
            http: reqwest::Client::new(),
            base,
            token: None,
        }
    }

    /// The API root, `…/api/v1`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The current access token, once logged in.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends a request; a non-2xx answer is [`Error::Status`].
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(Error::Status {
                method,
                path: path.to_owned(),
                status,
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| Error::Unexpected {
            path: path.to_owned(),
            what: "not JSON",
        })
    }

    /// Logs in, registering the account first if it does not exist.
    pub async fn register_or_login(
        &mut self,
        email: &str,
        password: &str,
        username: &str,
    ) -> Result<()> {
        let registered = self
            .call(
                Method::POST,
                "/auth/register",
                Some(json!({"email": email, "password": password, "username": username})),
            )
            .await;
        let answer = match registered {
            Ok(answer) => answer,
            Err(Error::Status {
                status: StatusCode::CONFLICT,
                ref body,
                ..
            }) if body.contains("already") => {
                self.call(
                    Method::POST,
                    "/auth/login",
                    Some(json!({"email": email, "password": password})),
                )
                .await?
            }
            Err(err) => return Err(err),
        };
        let token = answer["access_token"]
            .as_str()
            .ok_or_else(|| Error::Unexpected {
                path: "/auth/login".into(),
                what: "no access_token",
            })?;
        self.token = Some(token.to_owned());
        Ok(())
    }

    /// Pairs a device; the answer's `mqtt` object becomes its credentials.
    pub async fn pair_device(&self, hardware_id: &str, alias: &str) -> Result<DeviceCreds> {
        if self.token.is_none() {
            return Err(Error::NotLoggedIn);
        }
        let answer = self
            .call(
                Method::POST,
                "/devices",
                Some(json!({"hardware_id": hardware_id, "alias": alias})),
            )
            .await?;
        let unexpected = |what| Error::Unexpected {
            path: "/devices".into(),
            what,
        };
        let text = |value: &Value, what| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| unexpected(what))
        };
        let mqtt = &answer["mqtt"];
        Ok(DeviceCreds {
            device_id: answer["id"].as_u64().ok_or_else(|| unexpected("no id"))?,
            hardware_id: text(&answer["hardware_id"], "no hardware_id")?,
            alias: text(&answer["alias"], "no alias")?,
            client_id: text(&mqtt["client_id"], "no mqtt.client_id")?,
            username: text(&mqtt["username"], "no mqtt.username")?,
            password: text(&mqtt["password"], "no mqtt.password")?,
            next_seq: 1,
            next_ts_us: 0,
        })
    }

    /// Starts a session bound to `device_id`; returns its id.
    pub async fn start_session(&self, device_id: u64) -> Result<u64> {
        let answer = self
            .call(
                Method::POST,
                "/sessions",
                Some(json!({"device_id": device_id})),
            )
            .await?;
        answer["id"].as_u64().ok_or(Error::Unexpected {
            path: "/sessions".into(),
            what: "no id",
        })
    }

    /// Stops a session.
    pub async fn stop_session(&self, session_id: u64) -> Result<()> {
        self.call(Method::PATCH, &format!("/sessions/{session_id}"), None)
            .await
            .map(drop)
    }
}

/// A random 16-hex-digit hardware id.
pub fn random_hardware_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Registers or logs in, then pairs `count` devices (at most `concurrency` requests at
/// once) with fresh random hardware ids, named `{alias_prefix}-{n}`.
pub async fn provision(
    api_url: &str,
    email: &str,
    password: &str,
    count: usize,
    alias_prefix: &str,
    concurrency: usize,
) -> Result<CredsFile> {
    let mut api = Api::new(api_url);
    let username = email.split('@').next().unwrap_or("sim");
    api.register_or_login(email, password, username).await?;
    let api = Arc::new(api);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for n in 1..=count {
        let api = api.clone();
        let permits = permits.clone();
        let alias = format!("{alias_prefix}-{n}");
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            // A clash with an existing hardware id is a 409: draw another.
            let mut attempt = 0;
            loop {
                match api.pair_device(&random_hardware_id(), &alias).await {
                    Err(Error::Status {
                        status: StatusCode::CONFLICT,
                        ..
                    }) if attempt < 3 => attempt += 1,
                    other => break other,
                }
            }
        }));
    }
    let mut devices = Vec::with_capacity(count);
    for task in tasks {
        devices.push(task.await.expect("pairing task panicked")?);
    }
    Ok(CredsFile {
        api: api.base().to_owned(),
        mqtt: None,
        email: email.to_owned(),
        devices,
    })
}
