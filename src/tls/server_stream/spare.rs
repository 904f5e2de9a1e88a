//! Record buffers kept per worker thread between uses: outgoing ones
//! (zero-filled, for rustls to write records into) and incoming ones (room
//! for the client's next records).
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

/// The size of a pooled outgoing buffer: a full write's records (four of
/// 16 KiB and their overhead), see `stream.rs`.
pub(super) const SIZE: usize = 4 * (16_384 + 32);
/// The capacity of a pooled incoming buffer: a whole record and a read
/// after it (`records.rs`: what one read may need).
pub(super) const INCOMING: usize = super::records::MAX_RECORD + 4096;
/// Buffers of each kind kept per thread at most.
const KEPT: usize = 4;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static SPARE_INCOMING: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
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
    if buffer.len() == SIZE {
        keep(&SPARE, buffer);
    }
}

/// An empty buffer with room for [`INCOMING`] bytes (not filled: reads
/// write into its spare capacity).
pub(super) fn take_incoming() -> Vec<u8> {
    SPARE_INCOMING
        .with(|spare| spare.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(INCOMING))
}

/// Keeps `buffer`, emptied, for the next [`take_incoming`] if it has the
/// pooled capacity (one that grew for a long handshake message is freed).
pub(super) fn give_incoming(mut buffer: Vec<u8>) {
    if buffer.capacity() == INCOMING {
        buffer.clear();
        keep(&SPARE_INCOMING, buffer);
    }
}

fn keep(spare: &'static std::thread::LocalKey<RefCell<Vec<Vec<u8>>>>, buffer: Vec<u8>) {
    spare.with(|spare| {
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

    #[test]
    fn incoming_buffers_come_back_empty_and_grown_ones_are_freed() {
        SPARE_INCOMING.with(|s| s.borrow_mut().clear());
        let mut first = take_incoming();
        assert_eq!((first.len(), first.capacity()), (0, INCOMING));
        first.extend_from_slice(b"record");
        let at = first.as_ptr();
        give_incoming(first);
        let again = take_incoming();
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        let mut grown = again;
        grown.reserve(INCOMING + 1);
        give_incoming(grown);
        assert_eq!(SPARE_INCOMING.with(|s| s.borrow().len()), 0);
    }
}
