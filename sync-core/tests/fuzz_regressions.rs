//! Inputs the fuzz targets (`fuzz/`) once crashed on, kept as regression
//! tests: each file under `fixtures/fuzz-regressions/<target>/` goes through
//! the same checks as its fuzz target.

use std::path::PathBuf;

use sync_core::{ClientMsg, ServerMsg};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/fuzz-regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("readable fixture");
            (name, bytes)
        })
        .collect()
}

#[test]
fn decode_client_regressions() {
    let cases = inputs("decode_client");
    assert!(!cases.is_empty(), "the kept crashers are missing");
    for (name, data) in cases {
        if let Ok(msg) = ClientMsg::decode(&data, 1 << 20) {
            let again = ClientMsg::decode(&msg.encode(), 1 << 20);
            assert_eq!(again.as_ref(), Ok(&msg), "{name}");
        }
    }
}

#[test]
fn decode_server_regressions() {
    for (name, data) in inputs("decode_server") {
        if let Ok(msg) = ServerMsg::decode(&data, 1 << 20) {
            let again = ServerMsg::decode(&msg.encode(), 1 << 20);
            assert_eq!(again.as_ref(), Ok(&msg), "{name}");
        }
    }
}

/// The first crasher, spelled out: a padded (non-canonical) varint for the
/// `Hello` tag hid a foreign protocol version from the prefix check.
#[test]
fn padded_hello_tag_cannot_hide_the_version() {
    let bytes = [
        0x80, 0x00, 0x2f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let e = ClientMsg::decode(&bytes, 1 << 20).expect_err("version 47");
    assert_eq!(e.code(), sync_core::ErrorCode::ProtocolVersion);
}
