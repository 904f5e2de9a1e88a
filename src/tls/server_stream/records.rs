//! The stream's three buffers. Each holds capacity only while it holds
//! bytes: that is what makes an idle connection cost no buffer at all.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncWrite, ReadBuf};

use super::spare;

/// A TLS record header: content type, version, length.
const HEADER_LEN: usize = 5;
/// The largest record rustls accepts: 16 KiB of plaintext, 2 KiB of
/// expansion and the header (a longer one is refused from its header).
pub(super) const MAX_RECORD: usize = HEADER_LEN + 16_384 + 2048;
/// The most rustls may need at once: a handshake message of up to 64 KiB
/// joined from several records stays in the buffer until it is complete.
/// rustls' own buffered API stops at the same size.
pub(super) const MAX_INCOMING: usize = 0xffff;
/// One read when the next record's length is not known yet (rustls' own
/// read size); also lets one read take a few small records at once.
const READ_SIZE: usize = 4096;

/// Bytes read from the client that rustls has not discarded yet: a partial
/// record, or the records of a handshake message being joined.
#[derive(Debug, Default)]
pub(super) struct Incoming {
    bytes: Vec<u8>,
}

impl Incoming {
    /// Starts with bytes already read from the socket (the ClientHello).
    pub(super) fn new(bytes: Vec<u8>) -> Self {
        let mut incoming = Self { bytes };
        incoming.release_if_empty();
        incoming
    }

    /// Gives the buffer back to the thread's spares (`spare.rs`).
    fn release(&mut self) {
        spare::give_incoming(std::mem::take(&mut self.bytes));
    }

    /// What rustls processes: every byte not discarded yet, in order.
    pub(super) fn filled_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Drops the first `n` bytes, which rustls is done with; frees the
    /// buffer once nothing is left.
    pub(super) fn discard(&mut self, n: usize) {
        if n >= self.bytes.len() {
            self.release();
        } else if n > 0 {
            self.bytes.drain(..n);
        }
    }

    /// Frees the buffer if it holds nothing (after a read found nothing).
    pub(super) fn release_if_empty(&mut self) {
        if self.bytes.is_empty() {
            self.release();
        }
    }

    /// Makes room for the next read and says how much it may take: up to
    /// the end of the record at the front when its header is there (a
    /// whole record in one read), else [`READ_SIZE`] more; never past
    /// [`MAX_INCOMING`]. An error when rustls needs more than that.
    pub(super) fn reserve_for_read(&mut self) -> io::Result<usize> {
        let len = self.bytes.len();
        if len >= MAX_INCOMING {
            // rustls' words when its own buffer is full.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message buffer full",
            ));
        }
        let target = match front_record_end(&self.bytes) {
            // A partial record at the front: rustls has checked its header.
            Some(end) if end > len => end.max((len + READ_SIZE).min(MAX_RECORD)),
            // Fewer bytes than a header, or whole records rustls keeps
            // while it joins a handshake message.
            _ => len + READ_SIZE,
        }
        .min(MAX_INCOMING);
        if self.bytes.capacity() == 0 {
            self.bytes = spare::take_incoming();
        }
        self.bytes.reserve_exact(target - len);
        Ok(target - len)
    }

    /// The buffer reads append to.
    pub(super) fn for_read(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    pub(super) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

/// Where the record at the front of `bytes` ends, if its header is there.
fn front_record_end(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..HEADER_LEN)?;
    Some(HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]])))
}

/// What rustls made of the room it was given.
pub(super) enum Fill {
    /// It wrote this many bytes.
    Wrote(usize),
    /// It needs this much room and wrote nothing.
    NeedsRoom(usize),
}

/// Records for the client that the socket has not taken yet, in a buffer
/// from (and back to) the thread's spares (`spare.rs`) while it holds any.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Zero-filled up to its length once, so rustls writes records into it
    /// without the room being filled again for each; records are `..end`.
    bytes: Vec<u8>,
    end: usize,
    /// How many of the records the socket has taken.
    sent: usize,
}

impl Outgoing {
    /// Nothing waits to be sent.
    pub(super) fn is_empty(&self) -> bool {
        self.sent >= self.end
    }

    /// Appends what `fill` writes into the room after the records (at least
    /// `guess` bytes), or into the room rustls asks for when that is too
    /// little.
    pub(super) fn append_with(
        &mut self,
        guess: usize,
        mut fill: impl FnMut(&mut [u8]) -> io::Result<Fill>,
    ) -> io::Result<()> {
        if self.bytes.is_empty() {
            self.bytes = spare::take();
        }
        let start = self.end;
        let mut room = guess.max(self.bytes.len() - start);
        // rustls names the room it needs when it has too little: the
        // second try has it.
        for _ in 0..2 {
            if self.bytes.len() < start + room {
                self.bytes.resize(start + room, 0);
            }
            match fill(&mut self.bytes[start..start + room]) {
                Ok(Fill::Wrote(n)) => {
                    self.end = start + n.min(room);
                    return Ok(());
                }
                Ok(Fill::NeedsRoom(needed)) if needed > room => room = needed,
                Ok(Fill::NeedsRoom(_)) => break,
                Err(e) => {
                    self.release_if_empty();
                    return Err(e);
                }
            }
        }
        self.release_if_empty();
        Err(io::Error::other(
            "rustls asked for more room than it said it needed",
        ))
    }

    /// Gives the buffer back once it holds nothing to send.
    fn release_if_empty(&mut self) {
        if self.is_empty() {
            spare::give(std::mem::take(&mut self.bytes));
            (self.end, self.sent) = (0, 0);
        }
    }

    /// Writes until everything is sent (then gives the buffer back) or the
    /// socket is full.
    pub(super) fn poll_send<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.end {
            let rest = &self.bytes[self.sent..self.end];
            let n = ready!(Pin::new(&mut *io).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.release_if_empty();
        Poll::Ready(Ok(()))
    }

    /// Bytes of buffer held (0 once everything is sent).
    pub(super) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    #[cfg(test)]
    fn records(&self) -> &[u8] {
        &self.bytes[self.sent..self.end]
    }
}

/// Decrypted bytes the reader had no room for: the rest of a record, or
/// records rustls decrypted while the stream was writing.
#[derive(Debug, Default)]
pub(super) struct Plaintext {
    bytes: Vec<u8>,
    /// How many of `bytes` the reader has taken.
    read: usize,
}

impl Plaintext {
    pub(super) fn is_empty(&self) -> bool {
        self.read >= self.bytes.len()
    }

    /// Keeps `data` after what is already kept.
    pub(super) fn keep(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.read > 0 {
            self.bytes.drain(..self.read.min(self.bytes.len()));
            self.read = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// Moves what fits into `buf`; frees the buffer once all is taken.
    pub(super) fn take_into(&mut self, buf: &mut ReadBuf<'_>) -> usize {
        let rest = self.bytes.get(self.read..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.read += n;
        if self.is_empty() {
            *self = Self::default();
        }
        n
    }

    pub(super) fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_record_gets_room_for_the_whole_record() {
        let mut incoming = Incoming::new(vec![0x17, 0x03, 0x03, 0x40, 0x11, 1, 2]);
        let room = incoming.reserve_for_read().unwrap();
        assert_eq!(room, 5 + 0x4011 - 7);
        // Fewer bytes than a header: one plain read.
        let mut incoming = Incoming::new(vec![0x17, 0x03]);
        assert_eq!(incoming.reserve_for_read().unwrap(), READ_SIZE);
    }

    #[test]
    fn a_full_buffer_is_refused_and_an_empty_one_is_freed() {
        let mut incoming = Incoming::new(vec![0x16; MAX_INCOMING]);
        let e = incoming.reserve_for_read().unwrap_err();
        assert_eq!(e.to_string(), "message buffer full");
        incoming.discard(MAX_INCOMING + 1);
        assert_eq!(incoming.capacity(), 0);
        let mut incoming = Incoming::new(Vec::with_capacity(100));
        assert_eq!(incoming.capacity(), 0);
        incoming.reserve_for_read().unwrap();
        incoming.release_if_empty();
        assert_eq!(incoming.capacity(), 0);
    }

    #[test]
    fn plaintext_is_returned_in_order_and_freed_once_read() {
        let mut kept = Plaintext::default();
        kept.keep(b"abc");
        let mut space = [0u8; 2];
        let mut buf = ReadBuf::new(&mut space);
        assert_eq!(kept.take_into(&mut buf), 2);
        kept.keep(b"de");
        let mut space = [0u8; 8];
        let mut buf = ReadBuf::new(&mut space);
        assert_eq!(kept.take_into(&mut buf), 3);
        assert_eq!(buf.filled(), b"cde");
        assert_eq!(kept.capacity(), 0);
    }

    #[test]
    fn outgoing_grows_to_the_room_rustls_asks_for() {
        let mut out = Outgoing::default();
        let mut calls = 0;
        let more = spare::SIZE + 10;
        out.append_with(0, |room| {
            calls += 1;
            if room.len() < more {
                return Ok(Fill::NeedsRoom(more));
            }
            room[..4].copy_from_slice(b"rec!");
            Ok(Fill::Wrote(4))
        })
        .unwrap();
        assert_eq!((calls, out.records()), (2, &b"rec!"[..]));
        let refused = out.append_with(0, |_| Ok(Fill::NeedsRoom(0)));
        assert!(refused.is_err());
        assert_eq!(out.records(), b"rec!");
        out.append_with(3, |room| {
            room[..3].copy_from_slice(b"ord");
            Ok(Fill::Wrote(3))
        })
        .unwrap();
        assert_eq!(out.records(), b"rec!ord");
    }

    #[test]
    fn an_emptied_outgoing_buffer_goes_back_to_the_spares() {
        let mut out = Outgoing::default();
        out.append_with(0, |_| Err(io::Error::other("refused")))
            .unwrap_err();
        assert_eq!(out.capacity(), 0, "nothing queued: nothing held");
        out.append_with(0, |room| {
            room[..2].copy_from_slice(b"ab");
            Ok(Fill::Wrote(2))
        })
        .unwrap();
        let at = out.bytes.as_ptr();
        let mut sink = Vec::new();
        let waker = std::task::Waker::noop();
        let sent = out.poll_send(&mut sink, &mut Context::from_waker(waker));
        assert!(matches!(sent, Poll::Ready(Ok(()))));
        assert_eq!((sink.as_slice(), out.capacity()), (&b"ab"[..], 0));
        let next = spare::take();
        assert_eq!(next.as_ptr(), at, "the next write reuses it");
    }
}
