// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The tables of the archive and the layout of their keys.
//!
//! All tables share the store's one ordered key space; the first byte of a
//! key names its table. Numbers in keys are big-endian so that byte order is
//! numeric order; strings in the middle of a key end with a 0x00 byte so
//! that a prefix scan for one string does not run into a longer one. RFC 5322
//! allows no NUL in a Message-ID or an address; a hostile one that holds a
//! NUL only confuses its own index entries, since every hit is read back from
//! the message record. Records and blobs start with a version byte; index
//! values are empty, a receipt id or a big-endian number. `docs/formats.md`
//! lists the same layout for readers of the store.

use crate::analysis::Sha256Digest;
use crate::id::ReceiptId;

/// Store-wide settings: the schema version and the thread counter.
pub const META: u8 = 0x01;
/// receipt id → message record (JSON).
pub const MESSAGE: u8 = 0x10;
/// receipt id → the raw bytes as received (archive mode).
pub const BLOB: u8 = 0x11;
/// receipt id → receipt content (DER, see `crate::receipt::content`).
pub const RECEIPT_CONTENT: u8 = 0x12;
/// receipt id → signed receipt (CMS SignedData, DER).
pub const RECEIPT: u8 = 0x13;
/// receipt id → batch number (u64) and RFC 4998 evidence record (DER).
pub const EVIDENCE: u8 = 0x14;
/// raw SHA-256 → receipt id. The deduplication index.
pub const BY_RAW: u8 = 0x20;
/// Message-ID, 0x00, receipt id → empty.
pub const BY_MESSAGE_ID: u8 = 0x21;
/// canonical SHA-256, receipt id → empty.
pub const BY_CANONICAL: u8 = 0x22;
/// part SHA-256, receipt id → empty.
pub const BY_PART: u8 = 0x23;
/// thread node → thread number (u64).
pub const NODE_THREAD: u8 = 0x30;
/// thread number, thread node → empty.
pub const THREAD_NODE: u8 = 0x31;
/// thread number, receipt id → empty.
pub const THREAD_MESSAGE: u8 = 0x32;
/// old thread number → the thread number it was merged into.
pub const THREAD_ALIAS: u8 = 0x33;
/// lower-case address, 0x00, receipt id → empty.
pub const BY_ADDRESS: u8 = 0x40;
/// Date header (order-preserving i64), receipt id → empty.
pub const BY_DATE: u8 = 0x41;
/// receipt id, seen-at millis, 4 random bytes → sighting record (JSON).
pub const SIGHTING: u8 = 0x50;
/// receipt id → empty, while the message waits for its timestamp.
pub const PENDING: u8 = 0x60;

/// batch number (u64) → batch record (JSON).
pub const BATCH: u8 = 0x70;
/// batch number (u64) → the batch root's TimeStampToken (DER).
pub const BATCH_TOKEN: u8 = 0x71;

/// IMAP checkpoints: account name, 0x00, folder name -> version byte,
/// UIDVALIDITY (u32) and the highest UID stored (u32), big-endian.
pub const IMAP_CHECKPOINT: u8 = 0x80;

/// Retention: expiry (u64 milliseconds), receipt id -> empty, for each
/// message whose bytes are still stored and have a retention period.
pub const RETAIN: u8 = 0x90;
/// receipt id -> purge record (JSON): when the bytes were purged.
pub const PURGED: u8 = 0x91;
/// thread number (u64) -> hold record (JSON), while the thread is under
/// legal hold.
pub const HOLD: u8 = 0x92;
/// Audit log: time (u64 milliseconds), 4 random bytes -> audit entry
/// (JSON).
pub const AUDIT: u8 = 0xA0;
/// Notifications still to send: receipt id -> notification (JSON).
pub const NOTIFY: u8 = 0xB0;

/// Version byte of every JSON value written by this release.
pub const VALUE_V1: u8 = 1;
/// Version byte of a blob holding the raw bytes unencrypted.
pub const BLOB_PLAIN_V1: u8 = 1;

pub const META_SCHEMA: &[u8] = b"schema";
pub const META_THREAD_SEQ: &[u8] = b"thread-seq";
/// The number of the last batch stamped (u64).
pub const META_LAST_BATCH: &[u8] = b"last-batch";
/// The identifier (8 bytes) of the key that seals archive-mode blobs.
pub const META_ARCHIVE_KEY: &[u8] = b"archive-key-id";

/// A key built from a table byte and parts.
pub fn key(table: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(table);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

pub fn message(id: &ReceiptId) -> Vec<u8> {
    key(MESSAGE, &[id.as_bytes()])
}

pub fn blob(id: &ReceiptId) -> Vec<u8> {
    key(BLOB, &[id.as_bytes()])
}

pub fn by_raw(digest: &Sha256Digest) -> Vec<u8> {
    key(BY_RAW, &[&digest.0])
}

pub fn by_message_id_prefix(message_id: &str) -> Vec<u8> {
    key(BY_MESSAGE_ID, &[message_id.as_bytes(), &[0]])
}

pub fn by_message_id(message_id: &str, id: &ReceiptId) -> Vec<u8> {
    key(BY_MESSAGE_ID, &[message_id.as_bytes(), &[0], id.as_bytes()])
}

pub fn by_digest(table: u8, digest: &Sha256Digest, id: &ReceiptId) -> Vec<u8> {
    key(table, &[&digest.0, id.as_bytes()])
}

pub fn by_address_prefix(address: &str) -> Vec<u8> {
    key(BY_ADDRESS, &[address.to_lowercase().as_bytes(), &[0]])
}

pub fn by_address(address: &str, id: &ReceiptId) -> Vec<u8> {
    let mut k = by_address_prefix(address);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Maps an i64 to 8 bytes whose unsigned order is the signed order.
pub fn ordered_i64(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn by_date(date_unix: i64, id: &ReceiptId) -> Vec<u8> {
    key(BY_DATE, &[&ordered_i64(date_unix), id.as_bytes()])
}

/// A thread node: a Message-ID, or for a message without one, a 0x00 byte
/// and its receipt id (no Message-ID can start with 0x00).
pub fn node_for(message_id: Option<&str>, id: &ReceiptId) -> Vec<u8> {
    match message_id {
        Some(mid) => mid.as_bytes().to_vec(),
        None => key(0, &[id.as_bytes()]),
    }
}

pub fn node_thread(node: &[u8]) -> Vec<u8> {
    key(NODE_THREAD, &[node])
}

pub fn thread_node(thread: u64, node: &[u8]) -> Vec<u8> {
    key(THREAD_NODE, &[&thread.to_be_bytes(), node])
}

pub fn thread_message(thread: u64, id: &ReceiptId) -> Vec<u8> {
    key(THREAD_MESSAGE, &[&thread.to_be_bytes(), id.as_bytes()])
}

pub fn thread_alias(thread: u64) -> Vec<u8> {
    key(THREAD_ALIAS, &[&thread.to_be_bytes()])
}

pub fn sighting(id: &ReceiptId, seen_at: u64, nonce: [u8; 4]) -> Vec<u8> {
    key(SIGHTING, &[id.as_bytes(), &seen_at.to_be_bytes(), &nonce])
}

pub fn receipt_content(id: &ReceiptId) -> Vec<u8> {
    key(RECEIPT_CONTENT, &[id.as_bytes()])
}

pub fn receipt(id: &ReceiptId) -> Vec<u8> {
    key(RECEIPT, &[id.as_bytes()])
}

pub fn evidence(id: &ReceiptId) -> Vec<u8> {
    key(EVIDENCE, &[id.as_bytes()])
}

pub fn batch(number: u64) -> Vec<u8> {
    key(BATCH, &[&number.to_be_bytes()])
}

pub fn batch_token(number: u64) -> Vec<u8> {
    key(BATCH_TOKEN, &[&number.to_be_bytes()])
}

/// A further TSA's token over the same batch root (stamping mode `all`),
/// numbered from 1; it sorts right after the batch's own token.
pub fn batch_extra_token(number: u64, index: u8) -> Vec<u8> {
    key(BATCH_TOKEN, &[&number.to_be_bytes(), &[index]])
}

pub fn pending(id: &ReceiptId) -> Vec<u8> {
    key(PENDING, &[id.as_bytes()])
}

/// Reads a big-endian u64 from the start of `bytes`.
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The receipt id at the end of a key.
pub fn trailing_receipt_id(key: &[u8]) -> Option<ReceiptId> {
    ReceiptId::from_slice(key.get(key.len().checked_sub(16)?..)?)
}

pub fn retain(expires_at: u64, id: &ReceiptId) -> Vec<u8> {
    key(RETAIN, &[&expires_at.to_be_bytes(), id.as_bytes()])
}

pub fn purged(id: &ReceiptId) -> Vec<u8> {
    key(PURGED, &[id.as_bytes()])
}

pub fn hold(thread: u64) -> Vec<u8> {
    key(HOLD, &[&thread.to_be_bytes()])
}

pub fn audit(at: u64) -> Vec<u8> {
    let mut nonce = [0u8; 4];
    let _ = getrandom::getrandom(&mut nonce);
    key(AUDIT, &[&at.to_be_bytes(), &nonce])
}

pub fn notify(id: &ReceiptId) -> Vec<u8> {
    key(NOTIFY, &[id.as_bytes()])
}

/// The checkpoint key of `folder` in IMAP account `account`.
pub fn imap_checkpoint(account: &str, folder: &str) -> Vec<u8> {
    key(
        IMAP_CHECKPOINT,
        &[account.as_bytes(), &[0], folder.as_bytes()],
    )
}

/// A checkpoint's key and value.
pub fn checkpoint_entry(
    account: &str,
    folder: &str,
    uid_validity: u32,
    uid: u32,
) -> (Vec<u8>, Vec<u8>) {
    let mut value = vec![VALUE_V1];
    value.extend_from_slice(&uid_validity.to_be_bytes());
    value.extend_from_slice(&uid.to_be_bytes());
    (imap_checkpoint(account, folder), value)
}

/// Reads a checkpoint value: (UIDVALIDITY, UID).
pub fn read_checkpoint(value: &[u8]) -> Option<(u32, u32)> {
    match value {
        [VALUE_V1, v @ ..] if v.len() == 8 => Some((
            u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            u32::from_be_bytes([v[4], v[5], v[6], v[7]]),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_i64_keeps_signed_order() {
        let values = [i64::MIN, -86_400, -1, 0, 1, 1_700_000_000, i64::MAX];
        for pair in values.windows(2) {
            assert!(ordered_i64(pair[0]) < ordered_i64(pair[1]));
        }
    }
}
