//! A hostile client: any sequence of frames through the server's
//! per-connection message handling (`server_stub::fuzzing::session`), with
//! authentication off or on (valid, expired, forged or the frame's own
//! token; a client id taken by another subject), on a fresh in-memory store
//! with small limits. Nothing may panic, and the session's invariants must
//! hold: every server frame decodes, `Welcome` only first and only with
//! valid credentials, nothing after `Error`, the close code matches it, no
//! answer about a stream the token may not use, appended offsets dense.
//! Input layout: see `server-stub/src/fuzzing.rs`.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // Paused time: pacing waits, close grace periods and the settling pause
    // cost nothing, and a session runs the same way every time.
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    });
    rt.block_on(server_stub::fuzzing::session(data));
});
