//! Small doors closed: `--static` serves no dotfiles and follows no
//! symlink out of its folder, operational endpoints carry no CORS headers
//! and can live on their own address, and deeply nested payloads are
//! refused with a typed error.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sync_core::{ErrorCode, ServerMsg};

#[tokio::test]
async fn static_files_without_dotfiles_or_symlinks_out_of_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("dist");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(app.join("assets")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(app.join("index.html"), "<h1>app</h1>").unwrap();
    std::fs::write(app.join("assets/app.js"), "console.log(1)").unwrap();
    std::fs::write(app.join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir_all(app.join(".git")).unwrap();
    std::fs::write(app.join(".git/config"), "[core]").unwrap();
    std::fs::write(outside.join("passwd"), "root:x:0:0").unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), app.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, app.join("up")).unwrap();
    std::os::unix::fs::symlink(app.join("assets/app.js"), app.join("same.js")).unwrap();
    let s = TestServer::start(server_stub::Config {
        static_dir: Some(app.clone()),
        ..config(dir.path())
    })
    .await;
    let get = |path: &str| {
        let url = s.url(path);
        async move {
            let r = http().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/assets/app.js").await, (200, "console.log(1)".into()));
    assert_eq!(get("/same.js").await.0, 200, "a link inside the folder");
    for refused in [
        "/.env",
        "/%2Eenv",
        "/.git/config",
        "/leak.txt",
        "/up/passwd",
    ] {
        let (status, body) = get(refused).await;
        assert_eq!(status, 404, "{refused}: {body}");
        assert!(
            !body.contains("SECRET") && !body.contains("root:"),
            "{body}"
        );
    }
    // Client-side routes still get the app.
    assert_eq!(get("/todos/42").await, (200, "<h1>app</h1>".into()));
    s.stop().await;
}

#[tokio::test]
async fn operational_endpoints_have_no_cors() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    for path in ["/metrics", "/healthz", "/livez"] {
        let r = http()
            .get(s.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            !r.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{path}: {:?}",
            r.headers()
        );
        let pre = http()
            .request(reqwest::Method::OPTIONS, s.url(path))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(pre.headers().get("access-control-allow-origin").is_none());
    }
    // The API keeps its CORS.
    let r = http()
        .get(s.url("/v1/streams/x"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_some());
    s.stop().await;
}

#[tokio::test]
async fn operational_endpoints_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, ops_addr) = (main.local_addr().unwrap(), ops.local_addr().unwrap());
    let server = server_stub::Server::open(config(dir.path())).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_ops(main, Some(ops), async {
        let _ = stopped.await;
    }));
    let status =
        |url: String| async move { http().get(url).send().await.unwrap().status().as_u16() };
    for path in ["/metrics", "/healthz", "/livez"] {
        assert_eq!(status(format!("http://{ops_addr}{path}")).await, 200);
        assert_eq!(status(format!("http://{main_addr}{path}")).await, 404);
    }
    assert_eq!(
        status(format!("http://{main_addr}/v1/streams/x")).await,
        200
    );
    assert_eq!(status(format!("http://{ops_addr}/v1/streams/x")).await, 404);
    let _ = stop.send(());
    within("shutdown", task).await.unwrap().unwrap();
}

#[tokio::test]
async fn deeply_nested_payloads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(config(dir.path())).await;
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let body = |payload: &str| {
        format!(r#"{{"client_id":"0123456789abcdef0123456789abcdef","seq":1,"payload":{payload}}}"#)
    };
    let r = http()
        .post(s.url("/v1/streams/deep/intents"))
        .body(body(&deep(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(error_code(&v), "INVALID_JSON");
    let r = http()
        .post(s.url("/v1/streams/deep/intents"))
        .body(body(&deep(128)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Over WebSocket: a stored rejection, like an oversized payload.
    let (mut c, _) = Client::hello(&s.ws_url(), client_id(2)).await;
    c.push("deep", &[(1, deep(200).into_bytes())]).await;
    match c.recv().await {
        ServerMsg::Reject { code, .. } => assert_eq!(code, ErrorCode::InvalidJson),
        other => panic!("expected a rejection, got {other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn client_ids_from_an_open_server_are_bound_before_authentication() {
    use server_stub::auth::{now_secs, sign, Secret};
    const SECRET: &[u8] = b"bind-test-secret-0123456789abcdef-xyz";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let id = "0505050505050505".repeat(2);
    let bind = |sub: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
            .args([
                "--db",
                db.to_str().unwrap(),
                "bind",
                "--client-id",
                &id,
                "--sub",
                sub,
            ])
            .env_remove("LOGSYNC_JWT_SECRET")
            .output()
            .unwrap()
    };
    let out = bind("alice");
    assert!(out.status.success(), "{out:?}");
    // Bindings never change: another subject is refused.
    let out = bind("mallory");
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already bound"));
    let s = TestServer::start(server_stub::Config {
        jwt_secret: Some(Secret::new(SECRET).unwrap()),
        ..config(dir.path())
    })
    .await;
    let token = |sub: &str| {
        let claims =
            serde_json::json!({"sub": sub, "exp": now_secs() + 600, "read": ["*"], "write": ["*"]});
        sign(&claims.to_string(), SECRET)
    };
    let (_, first) =
        Client::hello_with_token(&s.ws_url(), client_id(5), Some(&token("mallory"))).await;
    match first {
        ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::Forbidden),
        other => panic!("expected FORBIDDEN, got {other:?}"),
    }
    let (_, first) =
        Client::hello_with_token(&s.ws_url(), client_id(5), Some(&token("alice"))).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    s.stop().await;
}
