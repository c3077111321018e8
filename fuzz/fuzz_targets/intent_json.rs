//! Any bytes as an HTTP intent body: parsing must never panic; an accepted
//! body's payload is valid JSON text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = sync_core::json::parse_intent(data) {
        assert!(sync_core::json::payload_as_json(&req.payload).is_some());
    }
});
