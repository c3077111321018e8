//! Any bytes as a server frame: decoding must never panic, and a decoded
//! message must survive re-encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sync_core::ServerMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ServerMsg::decode(data, 1 << 20) {
        let again = ServerMsg::decode(&msg.encode(), 1 << 20).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
