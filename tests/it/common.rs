//! The test harness: a real velt server on port 0 with a fresh database (a SQLite file in
//! a temp dir, or a MySQL database that is dropped afterwards), and an HTTP client.

use std::{net::SocketAddr, time::Duration};

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};
use velt::{App, Config, config::Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// Generates one test per backend from `async fn name(app: TestApp)`. MySQL variants
/// are `#[ignore]`d so that a run without MySQL reports them as not run, never as passed.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::TestApp::spawn(crate::common::Backend::Sqlite).await).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs MySQL: set VELT_TEST_MYSQL_URL and pass --include-ignored"]
                async fn $name() {
                    super::$name(crate::common::TestApp::spawn(crate::common::Backend::MySql).await).await;
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// A database created for one test and dropped with it (also when the test panics).
pub struct TestDb {
    pub url: String,
    mysql: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite:{}", dir.path().join("velt.db").display());
                TestDb {
                    url,
                    mysql: None,
                    _dir: dir,
                }
            }
            Backend::MySql => {
                let base = std::env::var("VELT_TEST_MYSQL_URL")
                    .expect("VELT_TEST_MYSQL_URL must point at a MySQL server, e.g. mysql://root@127.0.0.1:3306");
                let base = base.trim_end_matches('/').to_owned();
                let name = format!("velt_test_{}", velt::auth::token::random_id());
                let url = format!("{base}/{name}");
                // velt creates the database on connect; the guard drops it.
                TestDb {
                    url,
                    mysql: Some((base, name)),
                    _dir: dir,
                }
            }
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Runs a query returning one integer on this database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        if self.mysql.is_some() {
            let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }

    /// Runs a query returning one float (a FLOAT column on MySQL) on this database.
    pub async fn scalar_f64(&self, sql: &str) -> f64 {
        use sqlx::Connection;
        if self.mysql.is_some() {
            let mut conn = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
            let value: f32 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
            f64::from(value)
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.mysql.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with its own.
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::MySqlConnection::connect(&base).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(result, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database: {result:?}");
        }
    }
}

/// A test's configuration: the defaults, port 0, a fixed secret, a generous rate limit.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::with_data_dir(db.dir());
    config.database_url = Some(Secret::new(db.url.clone()));
    config.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.mqtt_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.jwt_secret = Some(Secret::new("integration-test-secret-0123456789abcdef"));
    config.auth_rate_limit_per_minute = 10_000;
    config.db_max_connections = 4;
    config
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub http: reqwest::Client,
    pub backend: Backend,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub db: std::sync::Arc<TestDb>,
}

/// A response, with the body parsed as JSON (Value::Null when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text in {self:?}"))
    }
}

/// A registered user with a live token pair.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::create(backend).await;
        let mut config = test_config(&db);
        adjust(&mut config);
        Self::start(backend, std::sync::Arc::new(db), config).await
    }

    pub async fn start(backend: Backend, db: std::sync::Arc<TestDb>, config: Config) -> TestApp {
        // Server logs go to the test's captured output (shown when it fails); RUST_LOG
        // tunes them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "velt=info,warn".into()),
            )
            .with_test_writer()
            .try_init();
        let app = App::build(config).await.expect("velt starts");
        let addr = app.http_addr();
        let mqtt_addr = app.mqtt_addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stop.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestApp {
            addr,
            mqtt_addr,
            http,
            backend,
            shutdown: Some(shutdown),
            task: Some(task),
            db,
        }
    }

    /// Triggers graceful shutdown and waits for the server to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Hands the shutdown trigger and the server task to the test.
    pub fn take_run(&mut self) -> (oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>) {
        (
            self.shutdown.take().expect("running"),
            self.task.take().expect("running"),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `body` verbatim (a `&str` or bytes), with `token` as Bearer if given.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        let mut request = self.http.request(method, self.url(path)).body(body);
        request = request.header("content-type", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "{status}: body is not JSON: {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Registers a fresh user.
    pub async fn signup(&self) -> User {
        let email = format!("user-{}@example.com", velt::auth::token::random_id());
        let resp = self
            .call(
                Method::POST,
                "/api/v1/auth/register",
                None,
                Some(json!({"email": email, "password": "s3cret-pass", "username": "tester"})),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
        User {
            id: resp.body["user"]["id"].as_i64().unwrap(),
            email,
            access: resp.body["access_token"].as_str().unwrap().to_owned(),
            refresh: resp.body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Pairs a device with a random hardware id; returns its id.
    pub async fn pair(&self, user: &User) -> i64 {
        self.pairing(user).await["id"].as_i64().unwrap()
    }

    /// Pairs a device with a random hardware id; returns the whole pairing response
    /// (with its MQTT credentials).
    pub async fn pairing(&self, user: &User) -> Value {
        let hardware_id = &velt::auth::token::random_id()[..16];
        let resp = self
            .post(
                "/api/v1/devices",
                &user.access,
                json!({"hardware_id": hardware_id, "alias": "wrist"}),
            )
            .await;
        assert_eq!(resp.status, StatusCode::CREATED, "{resp:?}");
        resp.body
    }

    /// Runs a query returning one float directly on the test database.
    pub async fn scalar_f64(&self, sql: &str) -> f64 {
        self.db.scalar_f64(sql).await
    }

    /// Runs a query returning one integer directly on the test database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.db.scalar(sql).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// `n` samples of `device` starting at `t0_us`, 10 ms apart, at rest (gravity on z).
pub fn samples(device: i64, t0_us: i64, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let ts = velt::timestamp::to_rfc3339(t0_us + i as i64 * 10_000);
                json!({"device_id": device, "ts": ts, "ax": 0.01 * i as f64, "ay": -0.02, "az": 9.81, "gx": 0.001, "gy": 0.0, "gz": -0.5})
            })
            .collect(),
    )
}

pub const T0: i64 = 1_753_722_303_000_000;

/// A TCP proxy in front of a server (the database), that a test can cut to simulate an
/// outage: every open connection is dropped and new ones are refused until `resume`.
pub struct Proxy {
    pub addr: SocketAddr,
    target: SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            target,
            tasks: Default::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (registry, target) = (self.tasks.clone(), self.target);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Drops every connection and stops accepting.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Accepts connections again, on the same address.
    pub async fn resume(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// The host:port of the MySQL server the tests use.
pub fn mysql_addr() -> SocketAddr {
    let url = std::env::var("VELT_TEST_MYSQL_URL").expect("VELT_TEST_MYSQL_URL");
    let url = url::Url::parse(&url).unwrap();
    let host = url.host_str().unwrap().replace("localhost", "127.0.0.1");
    format!("{host}:{}", url.port().unwrap_or(3306))
        .parse()
        .unwrap()
}
