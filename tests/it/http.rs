//! Cross-cutting HTTP behaviour: probes, the OpenAPI document and docs page, unknown
//! routes, CORS, start-up errors and graceful shutdown.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{
    Backend, Proxy, T0, TestApp, TestDb, backend_tests, mysql_addr, samples, test_config,
};

backend_tests!(
    probes_answer,
    shutdown_drains_in_flight_requests_and_the_writer
);

async fn probes_answer(app: TestApp) {
    for path in ["/health", "/api/v1/health"] {
        let resp = app.call(Method::GET, path, None, None).await;
        assert_eq!(
            (resp.status, resp.body.clone()),
            (StatusCode::OK, json!({"status": "ok"}))
        );
    }
    for path in ["/ready", "/api/v1/ready"] {
        assert_eq!(
            app.call(Method::GET, path, None, None).await.status,
            StatusCode::OK
        );
    }
}

async fn shutdown_drains_in_flight_requests_and_the_writer(mut app: TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let user = app.signup().await;
    let device = app.pair(&user).await;
    let body = samples(device, T0, 10_000).to_string();
    // Raw HTTP with `Expect: 100-continue`: the interim response proves the handler is
    // running (it asked for the body) before shutdown starts.
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/telemetry HTTP/1.1\r\nhost: velt\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        user.access,
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    socket.read_exact(&mut interim).await.unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );

    let stopping = {
        let (shutdown, task) = app.take_run();
        tokio::spawn(async move {
            let _ = shutdown.send(());
            task.await.unwrap()
        })
    };
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.ends_with(r#"{"inserted":10000}"#), "{response}");
    stopping.await.unwrap().expect("clean shutdown");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM telemetry").await, 10_000);
    assert!(
        app.http.get(app.url("/health")).send().await.is_err(),
        "the listener is closed"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn openapi_documents_every_route_and_docs_work_offline() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/devices", "get"),
        ("/api/v1/devices", "post"),
        ("/api/v1/devices/{id}", "get"),
        ("/api/v1/devices/{id}", "patch"),
        ("/api/v1/devices/{id}", "delete"),
        ("/api/v1/sessions", "get"),
        ("/api/v1/sessions", "post"),
        ("/api/v1/sessions/{id}", "get"),
        ("/api/v1/sessions/{id}", "patch"),
        ("/api/v1/sessions/{id}", "delete"),
        ("/api/v1/telemetry", "post"),
        ("/api/v1/telemetries", "post"),
        ("/api/v1/crashes", "get"),
        ("/api/v1/health", "get"),
        ("/api/v1/ready", "get"),
    ];
    for (path, method) in expected {
        let operation = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(operation.is_object(), "{method} {path} missing");
        assert!(
            operation["responses"].as_object().unwrap().len() >= 2 || path.ends_with("health"),
            "{method} {path}: errors undocumented"
        );
    }
    assert!(doc.body["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());

    let page = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "no CDN: every asset is served by velt"
    );
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let resp = app.http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let missing = app.call(Method::GET, "/api/v1/nothing", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error(), "no such route");
    let wrong_method = app.call(Method::PUT, "/api/v1/devices", None, None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error(), "method not allowed");
}

#[tokio::test]
async fn cors_is_permissive_by_default_and_configurable() {
    let open = TestApp::spawn(Backend::Sqlite).await;
    let preflight = |app: &TestApp| {
        app.http
            .request(Method::OPTIONS, app.url("/api/v1/devices"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let resp = preflight(&open).await.unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");

    let strict = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.cors_origins = vec!["https://app.example.com".into()]
    })
    .await;
    let resp = preflight(&strict).await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn start_up_errors_are_clear() {
    let db = TestDb::create(Backend::Sqlite).await;
    let mut config = test_config(&db);
    config.database_url = Some(velt::config::Secret::new("postgres://localhost/velt"));
    let err = velt::App::build(config).await.err().expect("refused");
    assert!(
        format!("{err:#}").contains("unsupported database URL scheme \"postgres\""),
        "{err:#}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = test_config(&db);
    config.http_listen = taken.local_addr().unwrap();
    let err = velt::App::build(config).await.err().expect("refused");
    assert!(
        format!("{err:#}").contains("cannot listen for HTTP"),
        "{err:#}"
    );
}

#[tokio::test]
async fn restart_keeps_data_and_migrations_are_idempotent() {
    let db = std::sync::Arc::new(TestDb::create(Backend::Sqlite).await);
    let mut first = TestApp::start(Backend::Sqlite, db.clone(), test_config(&db)).await;
    let user = first.signup().await;
    first.stop().await.unwrap();
    let second = TestApp::start(Backend::Sqlite, db.clone(), test_config(&db)).await;
    assert_eq!(
        second.get("/api/v1/auth/me", &user.access).await.status,
        StatusCode::OK,
        "same secret, same users"
    );
}

#[tokio::test]
#[ignore = "needs MySQL: set VELT_TEST_MYSQL_URL and pass --include-ignored"]
async fn mysql_ready_reports_a_database_outage_and_requests_get_503() {
    let proxy = Proxy::start(mysql_addr()).await;
    let app = TestApp::spawn_with(Backend::MySql, |config| {
        let url = config.database_url.as_ref().unwrap().expose().to_owned();
        let mut url = url::Url::parse(&url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(proxy.addr.port())).unwrap();
        config.database_url = Some(velt::config::Secret::new(url.to_string()));
    })
    .await;
    let user = app.signup().await;
    proxy.cut();
    let ready = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error(), "database unavailable");
    let devices = app.get("/api/v1/devices", &user.access).await;
    assert_eq!(devices.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(devices.error(), "database unavailable");
}
