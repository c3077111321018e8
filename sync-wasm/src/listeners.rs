//! Listener lists with the Redux rules: a notification calls the listeners
//! registered when it started (one added or removed meanwhile takes effect
//! from the next notification), and removing twice is harmless. The four
//! kinds share one list (one copy of its code in the module), each entry
//! marked with its kind.

use std::rc::Rc;

use crate::engine::Rejection;
use crate::error::WasmError;

/// Identifies a registered listener (unique within a store).
pub type ListenerId = u64;

/// What a listener is told; its kind is its index (`Told::kind`).
pub(crate) enum Told<'a> {
    /// The state changed.
    State,
    /// The status changed; the confirmed offset.
    Status(u64),
    /// An error.
    Error(&'a WasmError),
    /// The server refused an intent.
    Rejected(&'a Rejection),
}

impl Told<'_> {
    fn kind(&self) -> u8 {
        match self {
            Told::State => 0,
            Told::Status(_) => 1,
            Told::Error(_) => 2,
            Told::Rejected(_) => 3,
        }
    }
}

/// A listener, told only what is of its kind.
pub(crate) type Listener = Rc<dyn Fn(&Told)>;

/// Every listener of a store.
#[derive(Default)]
pub(crate) struct Listeners {
    next: ListenerId,
    entries: Vec<(ListenerId, u8, Listener)>,
}

impl Listeners {
    /// Adds a listener of `kind` (see `Told::kind`); returns its id.
    pub fn add(&mut self, kind: u8, f: Listener) -> ListenerId {
        self.next += 1;
        self.entries.push((self.next, kind, f));
        self.next
    }

    pub fn remove(&mut self, id: ListenerId) {
        self.entries.retain(|(i, _, _)| *i != id);
    }

    /// The listeners of `what`'s kind now, to call after the list is
    /// released.
    pub fn snapshot(&self, what: &Told) -> Vec<Listener> {
        let kind = what.kind();
        self.entries
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(_, _, f)| f.clone())
            .collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
