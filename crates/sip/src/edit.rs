//! Edits to a message, written in one pass into a new buffer: every byte outside the edited
//! ranges is copied as it came (ARCHITECTURE: SIP is edited in place, never re-serialised).

use std::ops::Range;

/// A set of non-overlapping changes to one message's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edits<'a> {
    src: &'a [u8],
    ops: Vec<(Range<usize>, Vec<u8>)>,
}

/// Two edits touch the same bytes, or one lies outside the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap;

impl<'a> Edits<'a> {
    /// No edits yet to `src`.
    pub fn new(src: &'a [u8]) -> Self {
        Edits {
            src,
            ops: Vec::new(),
        }
    }

    /// Inserts `bytes` before the byte at `at`.
    pub fn insert(&mut self, at: usize, bytes: &[u8]) -> &mut Self {
        self.ops.push((at..at, bytes.to_vec()));
        self
    }

    /// Replaces `range` with `bytes`.
    pub fn replace(&mut self, range: Range<usize>, bytes: &[u8]) -> &mut Self {
        self.ops.push((range, bytes.to_vec()));
        self
    }

    /// Removes `range`.
    pub fn remove(&mut self, range: Range<usize>) -> &mut Self {
        self.ops.push((range, Vec::new()));
        self
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The edited message. Insertions at the same place keep the order they were made in.
    pub fn apply(&self) -> Result<Vec<u8>, Overlap> {
        let mut ops: Vec<&(Range<usize>, Vec<u8>)> = self.ops.iter().collect();
        ops.sort_by_key(|(r, _)| (r.start, r.end));
        let grow: usize = ops.iter().map(|(_, b)| b.len()).sum();
        let mut out = Vec::with_capacity(self.src.len() + grow);
        let mut at = 0;
        for (range, bytes) in ops {
            if range.start < at || range.end < range.start || range.end > self.src.len() {
                return Err(Overlap);
            }
            out.extend_from_slice(&self.src[at..range.start]);
            out.extend_from_slice(bytes);
            at = range.end;
        }
        out.extend_from_slice(&self.src[at..]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_in_order_and_refuses_overlaps() {
        let src = b"0123456789";
        let mut e = Edits::new(src);
        e.insert(10, b"!")
            .replace(2..4, b"ab")
            .remove(6..7)
            .insert(0, b"<");
        e.insert(0, b"<");
        assert_eq!(e.apply().expect("disjoint"), b"<<01ab45789!");
        let mut e = Edits::new(src);
        e.replace(2..5, b"x").replace(4..6, b"y");
        assert_eq!(e.apply(), Err(Overlap));
        let mut e = Edits::new(src);
        e.remove(8..11);
        assert_eq!(e.apply(), Err(Overlap));
        assert_eq!(Edits::new(src).apply().expect("nothing"), src);
    }
}
