//! The credentials file: what `velt-sim provision` saves and `run` / `replay` read.
//!
//! JSON, mode 0600 (it holds each device's MQTT password, a device JWT). Each device also
//! keeps its batch counter and the time of its last sample, as real firmware keeps them
//! in flash, so a second run continues where the first stopped instead of reusing
//! sequence numbers and timestamps.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One paired device and its MQTT credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCreds {
    pub device_id: u64,
    pub hardware_id: String,
    pub alias: String,
    pub client_id: String,
    pub username: String,
    /// The device JWT.
    pub password: String,
    /// The next batch `seq` to use (1 for a new device).
    #[serde(default = "first_seq")]
    pub next_seq: u64,
    /// No sample of a later run may be older than this (µs since the epoch).
    #[serde(default)]
    pub next_ts_us: i64,
}

fn first_seq() -> u64 {
    1
}

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredsFile {
    /// Base URL of the REST API the devices were paired on.
    pub api: String,
    /// MQTT address (`host:port`) to use when `run` is not given `--mqtt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    /// The account that owns the devices.
    pub email: String,
    pub devices: Vec<DeviceCreds>,
}

impl CredsFile {
    pub fn load(path: &Path) -> anyhow::Result<CredsFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read credentials {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a velt-sim credentials file", path.display()))
    }

    /// Writes the file (replacing it atomically), readable by its owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    }
}
