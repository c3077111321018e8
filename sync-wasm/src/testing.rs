//! Fault injection for tests (feature `test-hooks`, never in a release
//! build): makes the browser refuse the next write transactions of one
//! database, the way it does when the origin's quota is used up; holds a
//! database's next events write back until the test lets it go; silences
//! a leader tab.
//!
//! An armed fault aborts the real transaction (nothing of it is stored)
//! and the store receives a real `DOMException` of the given name, through
//! the same path a browser's refusal takes.

use std::cell::RefCell;

use wasm_bindgen::JsValue;

thread_local! {
    static FAULTS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    static SILENT: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The leader tab of database `db_name` stops answering the other tabs'
/// pings (`silent`), as a frozen page does, while it keeps its lock and
/// its connection; `false` lets it answer again.
pub fn silence_leader(db_name: &str, silent: bool) {
    SILENT.with(|s| {
        let mut s = s.borrow_mut();
        s.retain(|d| d != db_name);
        if silent {
            s.push(db_name.to_string());
        }
    });
}

/// Whether the leader of `db_name` is silenced.
pub(crate) fn leader_silenced(db_name: &str) -> bool {
    SILENT.with(|s| s.borrow().iter().any(|d| d == db_name))
}

/// The next `count` write transactions on database `db_name` fail with a
/// `DOMException` named `dom_name` (e.g. `"QuotaExceededError"`).
pub fn fail_next_writes(db_name: &str, dom_name: &str, count: usize) {
    FAULTS.with(|f| {
        let mut f = f.borrow_mut();
        for _ in 0..count {
            f.push((db_name.to_string(), dom_name.to_string()));
        }
    });
}

/// Disarms every fault.
pub fn clear_faults() {
    FAULTS.with(|f| f.borrow_mut().clear());
}

/// Takes one armed fault of `db_name`, as the exception to fail with.
pub(crate) fn take_fault(db_name: &str) -> Option<JsValue> {
    let name = FAULTS.with(|f| {
        let mut f = f.borrow_mut();
        let i = f.iter().position(|(db, _)| db == db_name)?;
        Some(f.remove(i).1)
    })?;
    web_sys::DomException::new_with_message_and_name("injected by logsync test hooks", &name)
        .ok()
        .map(JsValue::from)
}

thread_local! {
    /// Databases whose next events write waits, and the resolver of the
    /// one waiting now (`None` while armed, not yet taken).
    static HELD: RefCell<Vec<(String, Option<js_sys::Function>)>> = const { RefCell::new(Vec::new()) };
}

/// The next events write on database `db_name` (confirmed events, in any
/// tab of this page) waits before its transaction begins, until
/// [`release_events_write`]: as a write does that the browser is slow to
/// start while another tab goes on.
pub fn hold_next_events_write(db_name: &str) {
    HELD.with(|h| h.borrow_mut().push((db_name.to_string(), None)));
}

/// Whether an events write on `db_name` waits now.
pub fn events_write_held(db_name: &str) -> bool {
    HELD.with(|h| {
        h.borrow()
            .iter()
            .any(|(db, r)| db == db_name && r.is_some())
    })
}

/// Lets the held events write on `db_name` go on (or disarms the hold).
pub fn release_events_write(db_name: &str) {
    let released = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let i = h.iter().position(|(db, _)| db == db_name)?;
        h.remove(i).1
    });
    if let Some(resolve) = released {
        let _ = resolve.call0(&JsValue::UNDEFINED);
    }
}

/// Takes the hold armed for `db_name`: the promise to await before the
/// events write's transaction begins.
pub(crate) fn take_hold(db_name: &str) -> Option<js_sys::Promise> {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let (_, slot) = h.iter_mut().find(|(db, r)| db == db_name && r.is_none())?;
        let mut resolver = None;
        let promise = js_sys::Promise::new(&mut |resolve, _| resolver = Some(resolve));
        *slot = resolver;
        Some(promise)
    })
}
