//! [`ServerTlsStream`]: an established client connection as a tokio
//! stream, driving rustls' unbuffered state machine one turn at a time.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BufMut;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, ReadTraffic,
    UnbufferedStatus, WriteTraffic,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::records::{Fill, Incoming, Outgoing, Plaintext};
use super::transport::Transport;

/// Plaintext one record takes.
const WRITE_CHUNK: usize = 16_384;
/// Plaintext one write takes, in records of [`WRITE_CHUNK`]: a client that
/// does not read leaves at most this much waiting here (tokio-rustls lets
/// rustls buffer 64 KiB too). One record per write cost a system call per
/// 16 KiB; a 64 KiB response now goes out in one.
const WRITE_BATCH: usize = 4 * WRITE_CHUNK;
/// What rustls adds to one record: header, explicit nonce or inner content
/// type, tag (a first guess at the room a write needs; rustls says if it
/// needs more).
const RECORD_OVERHEAD: usize = 5 + 8 + 16 + 3;
/// Room for a close_notify record.
const CLOSE_NOTIFY_ROOM: usize = 64;

/// A client connection whose TLS is rustls' (see the module's doc). Reads
/// give the client's plaintext; a `close_notify` from the client ends it
/// (`Ok` with nothing read), a TCP close without one is an
/// `UnexpectedEof` error, as tokio-rustls reports it. rustls' errors come
/// as `io::Error`s (`InvalidData`) with the `rustls::Error` inside.
pub struct ServerTlsStream<T = TcpStream> {
    pub(super) io: T,
    pub(super) conn: UnbufferedServerConnection,
    pub(super) incoming: Incoming,
    pub(super) outgoing: Outgoing,
    plaintext: Plaintext,
    /// The client sent close_notify: reads end once `plaintext` is taken.
    pub(super) peer_closed: bool,
    /// The last turn ended with rustls needing bytes from the client and
    /// none came since: another turn would find nothing to do.
    needs_input: bool,
    /// The client closed TCP without close_notify.
    unclean_eof: bool,
    /// close_notify is queued: nothing more is written.
    write_closed: bool,
    /// rustls failed: every later read and write fails the same way. Boxed:
    /// 8 bytes instead of 64 in every connection, for a rare event.
    failed: Option<Box<rustls::Error>>,
}

/// What one turn of rustls' state machine is for.
pub(super) enum Want<'a, 'b> {
    /// Plaintext into the caller's buffer; what does not fit is kept.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt this (at most [`WRITE_BATCH`] bytes), a record per
    /// [`WRITE_CHUNK`].
    Write(&'a [u8]),
    /// Queue close_notify.
    Close,
    /// Only what rustls does by itself: the handshake, what it queued.
    Drive,
}

/// Where a turn stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// The caller's read buffer is full.
    ReadFull,
    /// This many plaintext bytes are encrypted in `outgoing`.
    Wrote(usize),
    /// close_notify is in `outgoing`.
    CloseQueued,
    /// rustls needs more bytes from the client.
    NeedsInput,
    /// Application data may be written; rustls has nothing else to do.
    Writable,
    /// Both sides sent close_notify.
    Closed,
}

impl<T: Transport> ServerTlsStream<T> {
    /// A connection about to shake hands, with the bytes already read
    /// from `io` (the ClientHello) as the first input.
    pub(super) fn new(io: T, conn: UnbufferedServerConnection, read: Vec<u8>) -> Self {
        Self {
            io,
            conn,
            incoming: Incoming::new(read),
            outgoing: Outgoing::default(),
            plaintext: Plaintext::default(),
            peer_closed: false,
            needs_input: false,
            unclean_eof: false,
            write_closed: false,
            failed: None,
        }
    }

    /// The negotiated parameters (version, suite, ALPN, ...).
    pub fn session(&self) -> &rustls::CommonState {
        &self.conn
    }

    /// Bytes of buffer capacity held now (records in and out, plaintext
    /// kept): 0 for a connection that waits for its next request.
    pub fn buffer_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plaintext.capacity()
    }

    /// Runs rustls until it needs the socket or has done what `want`
    /// asks. Handshake records it produces go to `outgoing`, plaintext to
    /// the caller's buffer or `plaintext`.
    pub(super) fn turn(&mut self, want: Want<'_, '_>) -> io::Result<Turn> {
        let turn = self.run_rustls(want);
        self.needs_input = matches!(turn, Ok(Turn::NeedsInput));
        turn
    }

    /// [`Self::turn`]'s loop.
    fn run_rustls(&mut self, mut want: Want<'_, '_>) -> io::Result<Turn> {
        let Self {
            conn,
            incoming,
            outgoing,
            plaintext,
            peer_closed,
            failed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } =
                conn.process_tls_records(incoming.filled_mut());
            let step = match state {
                Err(e) => Err(tls_failure(failed, e)),
                Ok(ConnectionState::ReadTraffic(traffic)) => {
                    read_traffic(traffic, &mut want, plaintext, &mut discard)
                        .map_err(|e| tls_failure(failed, e))
                }
                Ok(ConnectionState::WriteTraffic(traffic)) => {
                    write_traffic(traffic, &mut want, outgoing).map(Some)
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => outgoing
                    .append_with(0, |room| encoded(data.encode(room)))
                    .map(|()| None),
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    // Sent from `outgoing` before the stream waits to read.
                    data.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Turn::NeedsInput)),
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => Ok(Some(Turn::Closed)),
                // Early data (never enabled) and states of later rustls.
                Ok(other) => Err(io::Error::other(format!(
                    "unexpected TLS connection state {other:?}"
                ))),
            };
            incoming.discard(discard);
            if let Some(turn) = step? {
                return Ok(turn);
            }
        }
    }

    /// After an error: the alert rustls queued goes out if the socket
    /// takes it at once (tokio-rustls does the same), and `e` is returned.
    pub(super) fn broken(&mut self, cx: &mut Context<'_>, e: io::Error) -> io::Error {
        if self.failed.is_some() {
            self.queue_alert();
            let _ = self.outgoing.poll_send(&mut self.io, cx);
        }
        e
    }

    /// Takes the records rustls queued after failing (its alert) into
    /// `outgoing`. Only while it has some: rustls hands them out before it
    /// would read input again, which after a failure must not happen.
    fn queue_alert(&mut self) {
        let Self {
            conn,
            incoming,
            outgoing,
            ..
        } = self;
        while conn.wants_write() {
            let UnbufferedStatus { discard, state } =
                conn.process_tls_records(incoming.filled_mut());
            let queued = match state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => outgoing
                    .append_with(0, |room| encoded(data.encode(room)))
                    .is_ok(),
                _ => false,
            };
            incoming.discard(discard);
            if !queued {
                break;
            }
        }
    }

    /// Reads more from the client into `incoming`, making room only once
    /// bytes are there: `Ok(0)` at EOF.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        ready!(self.io.poll_read_ready(cx))?;
        let max = self.incoming.reserve_for_read()?;
        // Into the spare capacity: nothing is zero-filled first.
        let mut room = self.incoming.for_read().limit(max);
        let read = poll_read_buf(Pin::new(&mut self.io), cx, &mut room);
        // Nothing read (readiness was stale, EOF, an error): no room kept.
        self.incoming.release_if_empty();
        if matches!(read, Poll::Ready(Ok(n)) if n > 0) {
            self.needs_input = false;
        }
        read
    }

    /// Why a write is refused: rustls failed, or close_notify is sent.
    fn failure(&self) -> Option<io::Error> {
        if let Some(e) = &self.failed {
            return Some(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::clone(e),
            ));
        }
        self.write_closed
            .then(|| io::Error::new(io::ErrorKind::BrokenPipe, "TLS close_notify already sent"))
    }
}

/// Remembers rustls' failure for every later call and wraps it as
/// tokio-rustls does.
fn tls_failure(failed: &mut Option<Box<rustls::Error>>, e: rustls::Error) -> io::Error {
    *failed = Some(Box::new(e.clone()));
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Takes the decrypted records rustls holds. `Some(ReadFull)` once the
/// reader's buffer is full (the rest waits in rustls or `plaintext`).
fn read_traffic(
    mut traffic: ReadTraffic<'_, '_, ServerConnectionData>,
    want: &mut Want<'_, '_>,
    plaintext: &mut Plaintext,
    discard: &mut usize,
) -> Result<Option<Turn>, rustls::Error> {
    while let Some(record) = traffic.next_record() {
        let record = record?;
        *discard += record.discard;
        if deliver(want, plaintext, record.payload) {
            return Ok(Some(Turn::ReadFull));
        }
    }
    Ok(None)
}

/// The handshake is done on our side: encrypt, close, or stop here.
fn write_traffic(
    mut traffic: WriteTraffic<'_, ServerConnectionData>,
    want: &mut Want<'_, '_>,
    outgoing: &mut Outgoing,
) -> io::Result<Turn> {
    match want {
        Want::Read(_) => Ok(Turn::NeedsInput),
        Want::Drive => Ok(Turn::Writable),
        Want::Write(data) => {
            let records = data.len().div_ceil(WRITE_CHUNK);
            outgoing.append_with(data.len() + records * RECORD_OVERHEAD, |room| {
                encrypted(traffic.encrypt(data, room))
            })?;
            Ok(Turn::Wrote(data.len()))
        }
        Want::Close => {
            outgoing.append_with(CLOSE_NOTIFY_ROOM, |room| {
                encrypted(traffic.queue_close_notify(room))
            })?;
            Ok(Turn::CloseQueued)
        }
    }
}

/// Gives `payload` to the reader (what does not fit is kept), or keeps it
/// all when the turn is not a read. True when the reader's buffer is full.
fn deliver(want: &mut Want<'_, '_>, plaintext: &mut Plaintext, payload: &[u8]) -> bool {
    match want {
        Want::Read(buf) if plaintext.is_empty() => {
            let n = payload.len().min(buf.remaining());
            buf.put_slice(&payload[..n]);
            plaintext.keep(&payload[n..]);
            buf.remaining() == 0
        }
        Want::Read(_) => {
            plaintext.keep(payload);
            true
        }
        _ => {
            plaintext.keep(payload);
            false
        }
    }
}

fn encoded(result: Result<usize, EncodeError>) -> io::Result<Fill> {
    match result {
        Ok(n) => Ok(Fill::Wrote(n)),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Ok(Fill::NeedsRoom(required_size))
        }
        Err(e) => Err(io::Error::other(e)),
    }
}

fn encrypted(result: Result<usize, EncryptError>) -> io::Result<Fill> {
    match result {
        Ok(n) => Ok(Fill::Wrote(n)),
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            Ok(Fill::NeedsRoom(required_size))
        }
        Err(e) => Err(io::Error::other(e)),
    }
}

/// How rustls words a TCP close without close_notify.
fn unexpected_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "peer closed connection without sending TLS close_notify: \
         https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
    )
}

impl<T: Transport> AsyncRead for ServerTlsStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.plaintext.take_into(buf) > 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &this.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::clone(e),
            )));
        }
        let before = buf.filled().len();
        loop {
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            if this.unclean_eof {
                return Poll::Ready(Err(unexpected_eof()));
            }
            // Waiting for the next request: straight to the socket.
            let turn = if this.needs_input {
                Turn::NeedsInput
            } else {
                match this.turn(Want::Read(buf)) {
                    Ok(turn) => turn,
                    Err(e) => return Poll::Ready(Err(this.broken(cx, e))),
                }
            };
            if buf.filled().len() > before || turn == Turn::Closed {
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                continue;
            }
            // What rustls queued while reading (a refusal of a
            // renegotiation) goes out when the socket takes it.
            if !this.outgoing.is_empty() {
                let _ = this.outgoing.poll_send(&mut this.io, cx);
            }
            if ready!(this.poll_fill(cx))? == 0 {
                this.unclean_eof = true;
            }
        }
    }
}

impl<T: Transport> AsyncWrite for ServerTlsStream<T> {
    /// Encrypts the start of `data` (up to [`WRITE_BATCH`], a record per
    /// [`WRITE_CHUNK`]) and sends what the socket takes.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.failure() {
            return Poll::Ready(Err(e));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Backpressure: new records only once the last ones are sent.
        ready!(this.outgoing.poll_send(&mut this.io, cx))?;
        let batch = &data[..data.len().min(WRITE_BATCH)];
        match this.turn(Want::Write(batch)) {
            Ok(Turn::Wrote(_)) => {}
            Ok(Turn::Closed) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Ok(turn) => {
                return Poll::Ready(Err(io::Error::other(format!(
                    "TLS connection cannot take application data ({turn:?})"
                ))))
            }
            Err(e) => return Poll::Ready(Err(this.broken(cx, e))),
        }
        // Sent now if the socket takes it, else by the next write or flush.
        if let Poll::Ready(Err(e)) = this.outgoing.poll_send(&mut this.io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(batch.len()))
    }

    // No vectored writes. rustls' unbuffered API encrypts one slice per
    // call into records of its own, and hyper, given vectored writes,
    // hands a body in the chunks it read from the backend: a 64 KiB
    // response became more, smaller records and cost more than hyper's
    // copy of it into one buffer (callgrind, `BODY=65536
    // benches/callgrind-request.sh`: 480k instructions per response
    // against 414k; 19 B: 58.2k against 57.5k).

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = &this.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::clone(e),
            )));
        }
        ready!(this.outgoing.poll_send(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Queues close_notify (once), sends what waits, then closes the
    /// socket's sending side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed && this.failed.is_none() {
            this.write_closed = true;
            if let Err(e) = this.turn(Want::Close) {
                return Poll::Ready(Err(this.broken(cx, e)));
            }
        }
        ready!(this.outgoing.poll_send(&mut this.io, cx))?;
        match ready!(Pin::new(&mut this.io).poll_shutdown(cx)) {
            // The client is gone already: nothing left to close.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            done => Poll::Ready(done),
        }
    }
}
