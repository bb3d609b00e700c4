//! `SpecHash`: the blake3 hash of an instance's fully resolved spec. The only place hashing
//! rules live.
//!
//! The input is a canonical encoding of what the instance does to its host (the rendered
//! action, file bytes included through their own hash, and the connection identity), never
//! the YAML text: key order and formatting do not change it, any semantic edit does. What
//! only steers execution (`needs`, `timeout`, `retries`, `check`, `undo`, `drift`) is left out
//! so editing it does not re-run the task (`docs/decisions/0003-spec-hash.md`).

use std::cell::RefCell;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Domain-separation context: bump the version when the encoding changes, which re-applies
/// every instance once (a deliberate, visible event).
const CONTEXT: &str = "drover 2026-11 instance spec v1";

#[expect(
    clippy::unsafe_derive_deserialize,
    reason = "the only unsafe is inside thread_local!, unrelated to decoding"
)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SpecHash([u8; 32]);

impl SpecHash {
    /// Hashes any serializable value through its canonical JSON encoding. Struct fields are
    /// written in declaration order and maps are `BTreeMap`s, so the bytes are deterministic.
    pub fn of<T: Serialize>(value: &T) -> SpecHash {
        thread_local! {
            /// Reused encoding buffer: one `update` per hash is much cheaper than the many
            /// small writes serde would make straight into the hasher.
            static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        // Deriving the key costs as much as hashing a short spec; do it once.
        static KEYED: OnceLock<blake3::Hasher> = OnceLock::new();
        let mut hasher = KEYED
            .get_or_init(|| blake3::Hasher::new_derive_key(CONTEXT))
            .clone();
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            // Our types serialize infallibly (no maps with non-string keys); were it ever to
            // fail, the hash would still be deterministic.
            let _ = serde_json::to_writer(&mut *buffer, value);
            hasher.update(&buffer);
        });
        SpecHash(*hasher.finalize().as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> SpecHash {
        SpecHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// The first 12 hex digits, enough for people to compare hashes by eye.
    pub fn short(self) -> String {
        self.to_hex().chars().take(12).collect()
    }
}

/// Hash of raw bytes (file content), as hex.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Hex SHA-256 of `bytes`: what the host's `sha256sum` prints, so the drift probe and an
/// `archive` task's marker can be compared with it on the host.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

impl fmt::Display for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SpecHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpecHash({})", self.short())
    }
}

impl TryFrom<String> for SpecHash {
    type Error = String;
    fn try_from(text: String) -> Result<SpecHash, String> {
        let bad = || format!("`{text}` is not a spec hash (64 hex digits)");
        if text.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = text.get(i * 2..i * 2 + 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(SpecHash(bytes))
    }
}

impl From<SpecHash> for String {
    fn from(h: SpecHash) -> String {
        h.to_hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = SpecHash::of(&("a", 1));
        assert_eq!(SpecHash::try_from(h.to_hex()).unwrap(), h);
        assert_eq!(h.short().len(), 12);
        assert_ne!(SpecHash::of(&("a", 2)), h);
    }
}
