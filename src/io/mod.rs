//! Byte streams below TLS and HTTP: replaying bytes read ahead, joining
//! two connections, and the timer floor that keeps their deadlines cheap.

pub mod replay;
pub mod splice;
pub mod timer_floor;

/// `len` bytes that differ with `seed` (xorshift): what the stream tests
/// send, checked byte for byte at the other end.
#[cfg(test)]
pub(crate) fn test_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
