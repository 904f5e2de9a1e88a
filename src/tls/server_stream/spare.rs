//! Outgoing record buffers kept per worker thread between uses.
//!
//! A response's records are encrypted into a buffer that is freed once the
//! socket has taken them, so an idle connection holds none. Allocating and
//! zero-filling 64 KiB for every large response, and freeing it after, cost
//! more than the encryption saved: glibc returned the top of the heap to
//! the kernel after each one (a `brk` per response, its pages faulted in
//! again for the next). So emptied buffers of the usual size wait here for
//! the next write on the same thread, already zero-filled. A few per
//! thread: that is one per connection writing at the same instant, which on
//! a worker thread is one. Hand-written: the object-pool crates add
//! locking or generic machinery for what is a bounded `Vec` per thread.

use std::cell::RefCell;

/// The size of a pooled buffer: a full write's records (four of 16 KiB
/// and their overhead), see `stream.rs`.
pub(super) const SIZE: usize = 4 * (16_384 + 32);
/// Buffers kept per thread at most.
const KEPT: usize = 4;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A zero-filled buffer of [`SIZE`] bytes (its length, not only capacity).
pub(super) fn take() -> Vec<u8> {
    SPARE
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; SIZE])
}

/// Keeps `buffer` for the next [`take`] on this thread if it is of the
/// pooled size and fewer than [`KEPT`] wait; else frees it. Its bytes
/// need not be zero again: whoever takes it only reads what it wrote.
pub(super) fn give(buffer: Vec<u8>) {
    if buffer.len() != SIZE {
        return;
    }
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEPT {
            spare.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_of_the_pooled_size_are_reused_and_others_freed() {
        SPARE.with(|s| s.borrow_mut().clear());
        let first = take();
        assert_eq!(first.len(), SIZE);
        let at = first.as_ptr();
        give(first);
        let again = take();
        assert_eq!(again.as_ptr(), at, "the given buffer comes back");
        drop(again);
        give(vec![0; SIZE + 1]);
        give(Vec::new());
        assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
        for _ in 0..KEPT + 2 {
            give(vec![0; SIZE]);
        }
        assert_eq!(SPARE.with(|s| s.borrow().len()), KEPT);
    }
}
