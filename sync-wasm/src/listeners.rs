//! Listener lists with the Redux rules: a notification calls the listeners
//! registered when it started (one added or removed meanwhile takes effect
//! from the next notification), and removing twice is harmless.

use std::rc::Rc;

/// Identifies a registered listener (unique within a store).
pub type ListenerId = u64;

/// One kind of listener.
pub(crate) struct List<F: ?Sized> {
    entries: Vec<(ListenerId, Rc<F>)>,
}

impl<F: ?Sized> Default for List<F> {
    fn default() -> Self {
        List {
            entries: Vec::new(),
        }
    }
}

impl<F: ?Sized> List<F> {
    pub fn add(&mut self, id: ListenerId, f: Rc<F>) {
        self.entries.push((id, f));
    }

    pub fn remove(&mut self, id: ListenerId) {
        self.entries.retain(|(i, _)| *i != id);
    }

    /// The listeners now, to call after the list is released.
    pub fn snapshot(&self) -> Vec<Rc<F>> {
        self.entries.iter().map(|(_, f)| f.clone()).collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
