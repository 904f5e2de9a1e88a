//! Session ticket keys from a file (`session_ticket_keys = "FILE"` on an
//! https listener), so that several snigate instances behind one L4 load
//! balancer resume each other's TLS sessions.
//!
//! Without a key file every listener uses rustls's own rotating ticketer
//! (random keys, replaced every 6 hours, never shared between processes).
//! rustls offers no way to build that ticketer from given key bytes, so the
//! file-based one is written here, over the `aws-lc-rs` AEAD that rustls
//! already uses.
//!
//! # The key file
//!
//! One or more 80-byte keys, concatenated: the nginx
//! `ssl_session_ticket_key` format (16 bytes key name, 32 bytes HMAC
//! secret, 32 bytes AES key), made with `openssl rand 80 > ticket.key`. A
//! file of exactly 48 bytes is also taken: one nginx AES-128 key (16 bytes
//! name, 16 HMAC, 16 AES). The first key encrypts new tickets; every key
//! decrypts. Rotation: prepend a new key, reload every instance, remove
//! the old key a ticket lifetime later.
//!
//! Only the format is shared with nginx: tickets are AES-GCM (the HMAC
//! secret is not used) and carry rustls's session encoding, so nginx and
//! snigate do not resume each other's sessions even with one file.
//!
//! # The ticket
//!
//! `key name (16) ‖ nonce (12) ‖ AES-GCM(issued_at (8, Unix seconds,
//! big-endian) ‖ rustls session state) ‖ tag (16)`, with the key name as
//! associated data. Nonces are random (96 bits), so one key should not seal
//! more than about 2^32 tickets: rotate keys (daily is common), which also
//! keeps the forward-secrecy damage of a leaked key small.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use rustls::server::ProducesTickets;

use crate::config::{ListenerMode, ListenerSettings};

/// One key in the file: name, HMAC secret, AES-256 key (nginx format).
pub const KEY_LEN: usize = 80;
/// One nginx AES-128 key: name, HMAC secret, AES-128 key.
pub const NGINX_AES128_KEY_LEN: usize = 48;
/// Most keys a file may hold (a bigger file is almost certainly not a key
/// file, and reading stops there).
pub const MAX_KEYS: usize = 64;
/// Lifetime of a ticket, in seconds: announced to clients, and enforced
/// when a ticket comes back (the issue time is inside the ticket), since
/// the keys of a file do not rotate on their own.
pub const TICKET_LIFETIME_SECS: u32 = 12 * 60 * 60;

const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
const ISSUED_LEN: usize = 8;

struct TicketKey {
    name: [u8; NAME_LEN],
    aead: RandomizedNonceKey,
}

/// A [`ProducesTickets`] over the keys of a file: the first key seals, any
/// key whose name a ticket carries opens it.
pub struct FileTicketer {
    path: PathBuf,
    keys: Vec<TicketKey>,
    lifetime: u32,
    notes: Vec<String>,
}

impl fmt::Debug for FileTicketer {
    // Names the file and counts keys; never shows key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTicketer")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl FileTicketer {
    /// Reads the key file at `path`. Errors name the file and say what is
    /// wrong; a file that every user may read loads, with a note saying so
    /// (see [`FileTicketer::notes`]).
    pub fn load(path: &Path) -> Result<FileTicketer, String> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mut notes = Vec::new();
        if let Some(note) = permission_note(path, &file) {
            notes.push(note);
        }
        let mut bytes = Vec::new();
        file.take((MAX_KEYS * KEY_LEN + 1) as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let mut ticketer = Self::from_bytes(&bytes).map_err(|e| format!("{shown}: {e}"))?;
        ticketer.path = path.to_path_buf();
        ticketer.notes = notes;
        Ok(ticketer)
    }

    /// Keys from the bytes of a key file (see the module documentation).
    pub fn from_bytes(bytes: &[u8]) -> Result<FileTicketer, String> {
        const HOW: &str = "a ticket key file holds one or more 80-byte keys \
                           (make one with: openssl rand 80 > ticket.key), \
                           or a single 48-byte nginx key";
        let (key_len, algorithm) = match bytes.len() {
            0 => return Err(format!("the file is empty; {HOW}")),
            NGINX_AES128_KEY_LEN => (NGINX_AES128_KEY_LEN, &AES_128_GCM),
            n if n > MAX_KEYS * KEY_LEN => {
                return Err(format!(
                    "the file holds more than {MAX_KEYS} keys ({} bytes); {HOW}",
                    MAX_KEYS * KEY_LEN
                ))
            }
            n if n % KEY_LEN == 0 => (KEY_LEN, &AES_256_GCM),
            n => return Err(format!("the file is {n} bytes long; {HOW}")),
        };
        let aes_len = algorithm.key_len();
        let mut keys = Vec::with_capacity(bytes.len() / key_len);
        for chunk in bytes.chunks_exact(key_len) {
            let mut name = [0u8; NAME_LEN];
            name.copy_from_slice(&chunk[..NAME_LEN]);
            let aead = RandomizedNonceKey::new(algorithm, &chunk[key_len - aes_len..])
                .map_err(|_| "cannot set up AES-GCM with a key of the file".to_string())?;
            keys.push(TicketKey { name, aead });
        }
        Ok(FileTicketer {
            path: PathBuf::new(),
            keys,
            lifetime: TICKET_LIFETIME_SECS,
            notes: Vec::new(),
        })
    }

    /// The file the keys came from (empty for [`FileTicketer::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many keys the file holds.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Warnings worth an operator's attention (a file every user can read).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// The key file of an https listener with `session_ticket_keys`, loaded;
/// `Ok(None)` for other listeners. Errors name the listener and the file.
pub fn listener_ticketer(l: &ListenerSettings) -> Result<Option<Arc<FileTicketer>>, String> {
    let Some(path) = l
        .session_ticket_keys
        .as_ref()
        .filter(|_| l.mode == ListenerMode::Https)
    else {
        return Ok(None);
    };
    FileTicketer::load(path)
        .map(|t| Some(Arc::new(t)))
        .map_err(|e| format!("listener \"{}\": session_ticket_keys: {e}", l.name))
}

/// A note when every user of the machine may read the key file, or users
/// other than its owner may change it. A group-readable file (`0640` with a
/// group only snigate's user is in) is fine, as for certificate keys (see
/// `hygiene.rs`).
///
/// A note rather than an error: the file is as secret as a certificate's
/// private key, which snigate also only warns about, and the usual ways to
/// hand secrets to a service mount them world-readable by default
/// (Kubernetes secret volumes 0644, Docker secrets 0444), inside a
/// container no other user can reach. Refusing those would break working
/// deployments; saying it on `check` and at start-up (and reload) lets the
/// operator decide.
#[cfg(unix)]
fn permission_note(path: &Path, file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata().ok()?.permissions().mode() & 0o7777;
    let access = match (mode & 0o004 != 0, mode & 0o022 != 0) {
        (false, false) => return None,
        (true, false) => "every user of this machine can read it",
        (false, true) => "users other than its owner can change it",
        (true, true) => "every user of this machine can read it and others can change it",
    };
    Some(format!(
        "session ticket key file {} has mode {mode:04o}: {access}; whoever reads it can \
         decrypt recorded TLS 1.2 sessions that used its tickets: chmod 600 it (or 640 \
         with a group only snigate's user is in)",
        path.display()
    ))
}

#[cfg(not(unix))]
fn permission_note(_path: &Path, _file: &std::fs::File) -> Option<String> {
    None
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.keys.first()?;
        let mut sealed = Vec::with_capacity(ISSUED_LEN + plain.len() + TAG_LEN);
        sealed.extend_from_slice(&now_secs().to_be_bytes());
        sealed.extend_from_slice(plain);
        let nonce = key
            .aead
            .seal_in_place_append_tag(Aad::from(key.name), &mut sealed)
            .ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + sealed.len());
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce.as_ref()[..]);
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + ISSUED_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        for key in self.keys.iter().filter(|k| k.name == name) {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            let Ok(plain) = key.aead.open_in_place(nonce, Aad::from(key.name), &mut buf) else {
                continue;
            };
            let (issued, state) = plain.split_at(ISSUED_LEN);
            let issued = u64::from_be_bytes(issued.try_into().ok()?);
            // A ticket from an instance whose clock runs ahead counts as
            // new; only age beyond the lifetime is refused.
            if now_secs().saturating_sub(issued) > u64::from(self.lifetime) {
                return None;
            }
            return Some(state.to_vec());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8) -> Vec<u8> {
        (0..KEY_LEN as u8)
            .map(|i| i.wrapping_mul(7) ^ fill)
            .collect()
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = FileTicketer::from_bytes(&key(1)).unwrap();
        let ticket = old.encrypt(b"session state").unwrap();
        assert_eq!(&ticket[..NAME_LEN], &key(1)[..NAME_LEN]);
        assert_eq!(old.decrypt(&ticket).unwrap(), b"session state");
        // A new key first: old tickets still open, new ones use the new key.
        let rotated = FileTicketer::from_bytes(&[key(2), key(1)].concat()).unwrap();
        assert_eq!(rotated.key_count(), 2);
        assert_eq!(rotated.decrypt(&ticket).unwrap(), b"session state");
        let fresh = rotated.encrypt(b"newer").unwrap();
        assert_eq!(&fresh[..NAME_LEN], &key(2)[..NAME_LEN]);
        assert!(old.decrypt(&fresh).is_none());
        // The old key dropped: its tickets no longer open.
        let dropped = FileTicketer::from_bytes(&key(2)).unwrap();
        assert!(dropped.decrypt(&ticket).is_none());
        assert_eq!(dropped.decrypt(&fresh).unwrap(), b"newer");
    }

    #[test]
    fn tampered_short_and_expired_tickets_are_refused() {
        let t = FileTicketer::from_bytes(&key(3)).unwrap();
        let ticket = t.encrypt(b"state").unwrap();
        for i in [NAME_LEN, NAME_LEN + NONCE_LEN, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert!(t.decrypt(&bad).is_none(), "byte {i} flipped");
        }
        assert!(t.decrypt(&ticket[..ticket.len() - 1]).is_none());
        assert!(t.decrypt(&ticket[..10]).is_none());
        assert!(t.decrypt(&[]).is_none());
        let expired = FileTicketer {
            lifetime: 0,
            ..FileTicketer::from_bytes(&key(3)).unwrap()
        };
        // Sealed "now - 10 s" under the same key.
        let key0 = &expired.keys[0];
        let mut sealed = (now_secs() - 10).to_be_bytes().to_vec();
        sealed.extend_from_slice(b"state");
        let nonce = key0
            .aead
            .seal_in_place_append_tag(Aad::from(key0.name), &mut sealed)
            .unwrap();
        let old = [&key0.name[..], &nonce.as_ref()[..], &sealed].concat();
        assert!(expired.decrypt(&old).is_none());
        assert_eq!(t.decrypt(&old).unwrap(), b"state");
    }

    #[test]
    fn sizes() {
        assert!(FileTicketer::from_bytes(&[]).unwrap_err().contains("empty"));
        let e = FileTicketer::from_bytes(&[0; 79]).unwrap_err();
        assert!(e.contains("79 bytes"), "{e}");
        assert!(FileTicketer::from_bytes(&[0; 96]).is_err());
        let e = FileTicketer::from_bytes(&vec![0; (MAX_KEYS + 1) * KEY_LEN]).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        let nginx = FileTicketer::from_bytes(&[5; NGINX_AES128_KEY_LEN]).unwrap();
        let ticket = nginx.encrypt(b"x").unwrap();
        assert_eq!(nginx.decrypt(&ticket).unwrap(), b"x");
        assert_eq!(
            FileTicketer::from_bytes(&[9; 3 * KEY_LEN])
                .unwrap()
                .key_count(),
            3
        );
    }
}
