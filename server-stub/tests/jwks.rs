//! Tokens an identity provider signs, verified with the public keys of a
//! JWKS file (`--jwt-jwks-file`): real servers on 127.0.0.1:0 with real
//! SQLite files, real WebSocket and HTTP clients, and the real binary.
//!
//! - RS256 and EdDSA tokens are accepted on WebSocket and HTTP, with the
//!   key their `kid` names, next to HS256 tokens of the shared secret;
//! - an unknown `kid` or a token of the wrong algorithm is `UNAUTHORIZED`;
//! - the binary refuses to start with a JWKS file it cannot use, and says
//!   which file and why.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use server_stub::auth::{now_secs, sign, Jwks, Secret};
use sync_core::{ErrorCode, ServerMsg};
use tokio::io::{AsyncBufReadExt, BufReader};

const SECRET: &[u8] = b"jwks-test-secret-0123456789abcdef";
const RSA_1: &[u8] = include_bytes!("fixtures/jwks/rsa-1.der");
const ED_1: &[u8] = include_bytes!("fixtures/jwks/ed-1.der");

fn jwks_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwks/jwks.json")
}

fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "exp": now_secs() + 3600, "read": ["a/*"], "write": ["a/*"]})
}

fn idp_token(alg: Algorithm, kid: &str, key: &EncodingKey, sub: &str) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, &claims(sub), key).unwrap()
}

fn rs256(kid: &str) -> String {
    idp_token(
        Algorithm::RS256,
        kid,
        &EncodingKey::from_rsa_der(RSA_1),
        "rsa-user",
    )
}

fn eddsa(kid: &str) -> String {
    idp_token(
        Algorithm::EdDSA,
        kid,
        &EncodingKey::from_ed_der(ED_1),
        "ed-user",
    )
}

async fn refused(url: &str, token: &str) -> (ErrorCode, String, Option<u16>) {
    let (mut c, first) = Client::hello_with_token(url, client_id(7), Some(token)).await;
    let ServerMsg::Error { code, message } = first else {
        panic!("expected a refusal, got {first:?}");
    };
    let (_, close) = c.recv_close().await;
    (code, message, close.map(|f| u16::from(f.code)))
}

#[tokio::test]
async fn rs256_and_eddsa_tokens_from_a_jwks_work_next_to_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        jwt_secret: Some(Secret::new(SECRET).unwrap()),
        jwt_jwks: Some(Jwks::from_file(&jwks_path()).unwrap()),
        ..config(dir.path())
    })
    .await;

    // WebSocket: each kind of token opens a session and may write a/*.
    let hs = sign(&claims("hs-user").to_string(), SECRET);
    for (i, token) in [rs256("rsa-1"), eddsa("ed-1"), hs].iter().enumerate() {
        let id = client_id(1 + i as u8);
        let (mut c, first) = Client::hello_with_token(&s.ws_url(), id, Some(token)).await;
        assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
        c.push(&format!("a/{i}"), &[(1, b"1".to_vec())]).await;
        assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    }

    // Unknown kid, a token of the right key under another key's kid, and
    // an RS256 token naming the Ed25519 key: all UNAUTHORIZED, close 1008.
    let (code, message, close) = refused(&s.ws_url(), &rs256("rsa-9")).await;
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("rsa-9"), "{message}");
    assert_eq!(close, Some(1008));
    let (code, message, _) = refused(&s.ws_url(), &rs256("rsa-2")).await;
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("signature"), "{message}");
    let (code, message, _) = refused(&s.ws_url(), &rs256("ed-1")).await;
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("algorithm"), "{message}");

    // HTTP: the same tokens as Bearer.
    let h = http();
    let get = |token: String| {
        h.get(s.url("/v1/streams/a%2F0/events?after=0"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get(eddsa("ed-1")).await.unwrap().status().as_u16(), 200);
    assert_eq!(get(rs256("rsa-1")).await.unwrap().status().as_u16(), 200);
    let r = get(eddsa("nobody")).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(error_code(&body), "UNAUTHORIZED");
    s.stop().await;
}

#[tokio::test]
async fn with_only_a_jwks_hs256_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(server_stub::Config {
        jwt_jwks: Some(Jwks::from_file(&jwks_path()).unwrap()),
        ..config(dir.path())
    })
    .await;
    let (code, message, _) =
        refused(&s.ws_url(), &sign(&claims("hs-user").to_string(), SECRET)).await;
    assert_eq!(code, ErrorCode::Unauthorized, "{message}");
    assert!(message.contains("HS256"), "{message}");
    // No token at all: the server is not open.
    let r = http()
        .get(s.url("/v1/streams/a%2F0/events?after=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (mut c, first) =
        Client::hello_with_token(&s.ws_url(), client_id(1), Some(&eddsa("ed-1"))).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.push("a/1", &[(1, b"1".to_vec())]).await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    s.stop().await;
}

/// Runs the binary with `--jwt-jwks-file path` and returns its exit status
/// and stderr; a server that starts is killed once it listens.
async fn run_with_jwks(dir: &Path, path: &Path) -> (bool, String, Option<String>) {
    let log = dir.join("server.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_logsync-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("log.db"))
        .arg("--jwt-jwks-file")
        .arg(path)
        .env_remove("LOGSYNC_JWT_SECRET")
        .env_remove("LOGSYNC_JWT_SECRET_FILE")
        .env_remove("LOGSYNC_JWT_JWKS_FILE")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("the listening line or the exit", lines.next_line())
        .await
        .unwrap();
    let listening = line.map(|l| l.trim().to_string());
    if listening.is_some() {
        // The authentication line follows the address line.
        within("the authentication line in the log", async {
            while !std::fs::read_to_string(&log)
                .unwrap()
                .to_lowercase()
                .contains("authentication")
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        child.kill().await.unwrap();
    }
    let status = within("the exit", child.wait()).await.unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    (status.success(), stderr, listening)
}

#[tokio::test]
async fn the_binary_refuses_to_start_with_a_jwks_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("broken.json", b"{\"keys\": [", "not a JWKS document"),
        ("empty.json", b"{\"keys\": []}", "no signature keys"),
        (
            "weak.json",
            b"{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"old\", \"n\": \"AQAB\", \"e\": \"AQAB\"}]}",
            "RSA key of about 24 bits",
        ),
        (
            "secret.json",
            b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}",
            "--jwt-secret-file",
        ),
    ];
    for (name, content, reason) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let (ok, stderr, listening) = run_with_jwks(dir.path(), &path).await;
        assert!(!ok && listening.is_none(), "{name} started: {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(reason), "{name}: {stderr}");
    }
    let missing = dir.path().join("missing.json");
    let (ok, stderr, _) = run_with_jwks(dir.path(), &missing).await;
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("cannot read the JWKS file"), "{stderr}");

    // The fixture starts a server that says authentication is on.
    let (_, stderr, listening) = run_with_jwks(dir.path(), &jwks_path()).await;
    assert!(listening.is_some(), "{stderr}");
    assert!(stderr.contains("authentication on"), "{stderr}");
    assert!(!stderr.contains("AUTHENTICATION IS OFF"), "{stderr}");
}
