#![doc = include_str!("../README.md")]

mod conn;
mod engine;
mod error;
mod hub;
mod lead;
mod listeners;
mod net;
mod page;
mod reducer;
mod signal;
mod socket;
mod storage;
mod wasm_store;
mod writer;

/// The module's allocator (talc): smaller and faster here than the
/// default dlmalloc (BENCHMARKS.md, "The allocator").
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

#[cfg(feature = "test-hooks")]
pub mod testing;

pub use engine::{
    ErrorInfo, PendingAction, Rejection, Status, Store, StoreOptions, DEFAULT_BACKOFF_MAX_MS,
    DEFAULT_BACKOFF_MIN_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_SNAPSHOT_EVERY, MAX_PAYLOAD_BYTES,
};
pub use error::{describe_js, WasmError};
pub use listeners::ListenerId;
pub use reducer::{JsReducer, StoreReducer};
pub use storage::SCHEMA_VERSION;
pub use wasm_store::{error_codes, open_store, WasmStore};
