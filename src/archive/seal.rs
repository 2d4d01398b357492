// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Encryption at rest of archive-mode messages.
//!
//! Each stored message's bytes are sealed with XChaCha20-Poly1305 under
//! the archive key, with a fresh random 192-bit nonce (large enough that
//! random nonces never repeat in practice, so no counter has to survive a
//! crash) and the message's raw SHA-256 as associated data, so a sealed
//! blob opens only as the message its record names. The key is 32 random
//! bytes in a file of its own (64 hexadecimal digits), created with mode
//! 0600 on first use, which the configuration can place outside the data
//! directory; a copy of the store alone reveals no message.
//!
//! The store remembers the key's identifier (a SHA-256 of the key, cut to
//! 8 bytes): a missing key file when sealed blobs exist, or a different
//! key, is refused when the archive opens, before anything is written, so
//! that no message is ever sealed under a key that would orphan the
//! others. Lose the key file and the stored messages cannot be read: back
//! it up apart from the store.
//!
//! Blob layout (after the blob version byte `0x02`): the key identifier
//! (8 bytes), the nonce (24 bytes), then the ciphertext with its 16-byte
//! tag.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Blob version byte of a sealed blob.
pub const BLOB_SEALED_V1: u8 = 2;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const AAD_LABEL: &[u8] = b"mailnotary blob v2 raw-sha256:";

/// Errors of the archive key and of sealed blobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("cannot read the archive key file {path}: {error}")]
    Read { path: String, error: String },
    #[error("cannot create the archive key file {path}: {error}")]
    Create { path: String, error: String },
    #[error(
        "the archive key file {path} is not 64 hexadecimal digits; restore the key file from \
         its backup"
    )]
    Malformed { path: String },
    #[error(
        "the archive key file {path} is missing, but the store holds messages sealed under \
         key {expected}; restore that key file from its backup (a new key would leave them \
         unreadable)"
    )]
    Missing { path: String, expected: String },
    #[error(
        "the archive key file {path} holds key {found}, but the store's messages are sealed \
         under key {expected}; point [archive] key_file at the right file"
    )]
    WrongKey {
        path: String,
        found: String,
        expected: String,
    },
    #[error("a stored message is sealed under key {found}, not the archive key {expected}")]
    OtherKey { found: String, expected: String },
    #[error("a sealed message does not open: its bytes or its record were changed")]
    Tampered,
    #[error("a sealed blob is too short to be one")]
    Truncated,
    #[error("cannot encrypt a message: {0}")]
    Seal(String),
    #[error("the message is sealed, and no archive key is loaded")]
    NoKey,
}

/// The archive key.
#[derive(Clone)]
pub struct ArchiveKey {
    cipher: XChaCha20Poly1305,
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveKey({})", self.id_hex())
    }
}

fn key_id(key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let digest = Sha256::new()
        .chain_update(b"mailnotary archive key id:")
        .chain_update(key)
        .finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

impl ArchiveKey {
    pub fn from_bytes(key: [u8; 32]) -> ArchiveKey {
        ArchiveKey {
            cipher: XChaCha20Poly1305::new(&key.into()),
            id: key_id(&key),
        }
    }

    /// The key's identifier, which the store keeps.
    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// Reads the key file at `path`; creates it (mode 0600) when it does
    /// not exist and `expected` (the identifier the store knows) is none.
    pub fn open_or_create(
        path: &Path,
        expected: Option<[u8; KEY_ID_LEN]>,
    ) -> Result<ArchiveKey, SealError> {
        let shown = path.display().to_string();
        let key = match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(SealError::Malformed {
                        path: shown.clone(),
                    })?;
                ArchiveKey::from_bytes(bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(expected) = expected {
                    return Err(SealError::Missing {
                        path: shown,
                        expected: hex::encode(expected),
                    });
                }
                let mut bytes = [0u8; 32];
                getrandom::getrandom(&mut bytes).map_err(|e| SealError::Create {
                    path: shown.clone(),
                    error: e.to_string(),
                })?;
                write_new_key(path, &bytes).map_err(|e| SealError::Create {
                    path: shown.clone(),
                    error: e.to_string(),
                })?;
                tracing::info!(path = %shown, "created the archive key; back it up apart from the store");
                ArchiveKey::from_bytes(bytes)
            }
            Err(e) => {
                return Err(SealError::Read {
                    path: shown,
                    error: e.to_string(),
                });
            }
        };
        if let Some(expected) = expected
            && expected != key.id
        {
            return Err(SealError::WrongKey {
                path: shown,
                found: key.id_hex(),
                expected: hex::encode(expected),
            });
        }
        Ok(key)
    }

    fn aad(raw_sha256: &[u8; 32]) -> Vec<u8> {
        [AAD_LABEL, raw_sha256.as_slice()].concat()
    }

    /// The sealed blob of `raw`, whose SHA-256 is `raw_sha256`.
    pub fn seal(&self, raw: &[u8], raw_sha256: &[u8; 32]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| SealError::Seal(e.to_string()))?;
        let aad = ArchiveKey::aad(raw_sha256);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: raw,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal("the message is too large to encrypt".into()))?;
        let mut blob = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + sealed.len());
        blob.push(BLOB_SEALED_V1);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// Opens a sealed blob (after its version byte).
    pub fn open(&self, sealed: &[u8], raw_sha256: &[u8; 32]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < KEY_ID_LEN + NONCE_LEN + 16 {
            return Err(SealError::Truncated);
        }
        let (id, rest) = sealed.split_at(KEY_ID_LEN);
        if id != self.id {
            return Err(SealError::OtherKey {
                found: hex::encode(id),
                expected: self.id_hex(),
            });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = ArchiveKey::aad(raw_sha256);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Tampered)
    }
}

/// Writes a new key file readable by its owner only.
fn write_new_key(path: &Path, key: &[u8; 32]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{}", hex::encode(key))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let key = ArchiveKey::from_bytes([7; 32]);
        let digest = [1u8; 32];
        let blob = key
            .seal(b"Subject: x\r\n\r\nsecret price\r\n", &digest)
            .unwrap();
        assert_eq!(blob[0], BLOB_SEALED_V1);
        assert!(!blob.windows(12).any(|w| w == b"secret price"));
        let raw = key.open(&blob[1..], &digest).unwrap();
        assert_eq!(raw, b"Subject: x\r\n\r\nsecret price\r\n");
        // Another record's digest, a flipped byte, another key: refused.
        assert!(matches!(
            key.open(&blob[1..], &[2u8; 32]),
            Err(SealError::Tampered)
        ));
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            key.open(&flipped[1..], &digest),
            Err(SealError::Tampered)
        ));
        let other = ArchiveKey::from_bytes([8; 32]);
        assert!(matches!(
            other.open(&blob[1..], &digest),
            Err(SealError::OtherKey { .. })
        ));
        // Two seals of the same bytes differ (fresh nonces).
        assert_ne!(
            key.seal(b"a", &digest).unwrap(),
            key.seal(b"a", &digest).unwrap()
        );
    }

    #[test]
    fn key_file_created_0600_and_checked_against_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/archive.key");
        let key = ArchiveKey::open_or_create(&path, None).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = ArchiveKey::open_or_create(&path, Some(key.id())).unwrap();
        assert_eq!(again.id(), key.id());
        let e = ArchiveKey::open_or_create(&path, Some([0; 8])).unwrap_err();
        assert!(matches!(e, SealError::WrongKey { .. }), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = ArchiveKey::open_or_create(&path, Some(key.id())).unwrap_err();
        assert!(e.to_string().contains("is missing"), "{e}");
        assert!(!path.exists(), "no new key replaces a missing one");
        std::fs::write(&path, "not hex\n").unwrap();
        let e = ArchiveKey::open_or_create(&path, None).unwrap_err();
        assert!(matches!(e, SealError::Malformed { .. }), "{e}");
    }
}
