//! Header edits a plugin asks for. Plugins never hold the gateway's header types: they queue
//! edits here and the gateway applies them in order, keeping its own bookkeeping (header
//! spelling, hop-by-hop rules) intact.

use http::{HeaderName, HeaderValue};

/// One edit of a header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one.
    Set(HeaderName, HeaderValue),
    /// Add a value, keeping the ones already there.
    Append(HeaderName, HeaderValue),
    /// Remove every value of the header.
    Remove(HeaderName),
}

/// An ordered list of header edits. Empty until a plugin pushes one; applying an empty list
/// costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    ops: Vec<HeaderOp>,
}

impl HeaderEdits {
    /// Replaces every value of `name` (for example the verified `X-User-Id`, which also
    /// drops a value the client sent to spoof it).
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.ops.push(HeaderOp::Set(name, value));
    }

    /// Adds a value to `name`, keeping existing ones.
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.ops.push(HeaderOp::Append(name, value));
    }

    /// Removes `name` entirely (for example `Authorization` once it has been checked).
    pub fn remove(&mut self, name: HeaderName) {
        self.ops.push(HeaderOp::Remove(name));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The edits in the order they were asked for.
    pub fn ops(&self) -> &[HeaderOp] {
        &self.ops
    }

    /// How many headers these edits can add at most.
    pub fn additions(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| !matches!(op, HeaderOp::Remove(_)))
            .count()
    }

    /// Forgets every edit, keeping the list's room for the next ones.
    pub fn clear(&mut self) {
        self.ops.clear();
    }

    /// Removes and returns every edit, leaving the list empty.
    pub fn take(&mut self) -> Vec<HeaderOp> {
        std::mem::take(&mut self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_counts_additions() {
        let mut e = HeaderEdits::default();
        assert!(e.is_empty());
        e.remove(http::header::AUTHORIZATION);
        e.set(
            HeaderName::from_static("x-user-id"),
            HeaderValue::from_static("u1"),
        );
        e.append(
            HeaderName::from_static("x-scope"),
            HeaderValue::from_static("a"),
        );
        assert_eq!(e.additions(), 2);
        assert!(matches!(e.ops()[0], HeaderOp::Remove(_)));
        assert_eq!(e.take().len(), 3);
        assert!(e.is_empty());
        e.append(
            HeaderName::from_static("x-scope"),
            HeaderValue::from_static("b"),
        );
        e.clear();
        assert!(e.is_empty());
        assert_eq!(e.additions(), 0);
    }
}
