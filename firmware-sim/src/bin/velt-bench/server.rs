//! The velt server under test, as a child process (the release binary), and what the
//! kernel says about it: CPU time from `/proc/<pid>/stat`, RSS and its peak (`VmHWM`,
//! reset between phases through `/proc/<pid>/clear_refs`).

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde::Serialize;
use tokio::process::{Child, Command};

pub const JWT_SECRET: &str = "velt-bench-secret-0123456789abcdef-0123456789";

pub struct VeltServer {
    child: Child,
    pub pid: u32,
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub binary: PathBuf,
    pub data_dir: tempfile::TempDir,
}

pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl VeltServer {
    pub async fn start(binary: &Path, database_url: &str, log: &Path) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let (http, mqtt) = (free_port()?, free_port()?);
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(binary)
            .arg("serve")
            .env("VELT_DATABASE_URL", database_url)
            .env("VELT_DATA_DIR", data_dir.path())
            .env("VELT_HTTP_LISTEN", http.to_string())
            .env("VELT_MQTT_LISTEN", mqtt.to_string())
            .env("VELT_JWT_SECRET", JWT_SECRET)
            .env("VELT_AUTH_RATE_LIMIT", "1000000")
            .env("VELT_ACCESS_TOKEN_TTL", "12h")
            .env("RUST_LOG", "warn")
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("velt exited at once")?;
        let server = VeltServer {
            child,
            pid,
            http,
            mqtt,
            binary: binary.to_owned(),
            data_dir,
        };
        let health = format!("http://{http}/health");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "velt did not answer {health} within 60 s (see {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(server)
    }

    pub fn api(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `velt token --name … --acl …` with the server's secret.
    pub async fn service_token(&self, name: &str, acl: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(&self.binary);
        command
            .arg("token")
            .arg("--name")
            .arg(name)
            .arg("--ttl")
            .arg("2h")
            .env("VELT_JWT_SECRET", JWT_SECRET)
            .env("VELT_DATA_DIR", self.data_dir.path());
        for rule in acl {
            command.arg("--acl").arg(rule);
        }
        let out = command.output().await?;
        anyhow::ensure!(
            out.status.success(),
            "velt token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    pub fn sample(&self) -> ProcSample {
        ProcSample::read(self.pid)
    }

    /// Resets the peak RSS (VmHWM) so the next phase measures its own peak.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    /// SIGTERM, then wait (SIGKILL after 30 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// CPU ticks and memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    at: Instant,
    ticks: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> ProcSample {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        ProcSample {
            at: Instant::now(),
            // Field 14 is index 11 after the name (state is index 0 = field 3).
            ticks: tick(11) + tick(12),
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        }
    }
}

/// What the server used during one phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    /// Average CPU cores busy (1.0 = one core all the time).
    pub cpu_cores: f64,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

pub fn usage(before: ProcSample, after: ProcSample) -> Usage {
    let secs = (after.at - before.at).as_secs_f64().max(1e-9);
    Usage {
        // CLK_TCK is 100 on Linux.
        cpu_cores: (after.ticks.saturating_sub(before.ticks)) as f64 / 100.0 / secs,
        rss_mib: after.rss_kib as f64 / 1024.0,
        peak_rss_mib: after.hwm_kib as f64 / 1024.0,
    }
}
