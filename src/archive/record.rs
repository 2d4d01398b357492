// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The records kept per message and per sighting, and their encoding.
//!
//! Values are one version byte ([`keys::VALUE_V1`]) followed by JSON. JSON
//! keeps the store readable with generic tools and lets fields be added
//! without a migration; the version byte is there for the day a field must
//! change meaning.

use serde::{Deserialize, Serialize};

use super::keys;
use crate::analysis::{Anomaly, Digests, Metadata};
use crate::envelope::Envelope;
use crate::id::ReceiptId;
use crate::store::StoreError;

/// What is kept of a message's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The raw bytes are kept, so `export` can return them.
    Archive,
    /// Only digests and metadata are kept.
    HashOnly,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Archive => "archive",
            Mode::HashOnly => "hash-only",
        }
    }
}

/// Everything stored about one message, written once when it is first
/// received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The receipt id in its text form.
    pub receipt_id: String,
    /// The first arrival: when and through what.
    pub envelope: Envelope,
    pub metadata: Metadata,
    pub digests: Digests,
    pub anomalies: Vec<Anomaly>,
    /// Length of the raw bytes.
    pub size: u64,
    pub mode: Mode,
    /// The policy rule that decided for the message, and what it set.
    #[serde(default)]
    pub policy: AppliedPolicy,
    /// DKIM and ARC results with the key records used, when the message
    /// was signed and the policy checks DKIM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<crate::dkim::DkimReport>,
}

/// What the policy decided for a message, as kept in its record (and, but
/// for the TSAs, in its receipt).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPolicy {
    /// The rule's name.
    pub rule: String,
    /// The retention period as the rule wrote it (`"7y"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// When the message's bytes may be purged, milliseconds since the
    /// epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The header fields kept out of the record and the receipt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
    /// The applicant's statement written into the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The TSAs the rule chose; empty for the configured ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tsa: Vec<String>,
}

impl MessageRecord {
    /// The receipt id as a value.
    pub fn id(&self) -> Result<ReceiptId, StoreError> {
        self.receipt_id
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("message record: {e}")))
    }

    /// The time used to order and filter messages: the Date header when it
    /// is valid, else the gateway's receipt time.
    pub fn sort_time(&self) -> i64 {
        self.metadata
            .date_unix
            .unwrap_or((self.envelope.received_at / 1000) as i64)
    }
}

/// One more arrival of bytes already stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    pub envelope: Envelope,
}

/// Encodes a value with the current version byte.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![keys::VALUE_V1];
    serde_json::to_writer(&mut out, value)
        .map_err(|e| StoreError::Bug(format!("cannot encode a record: {e}")))?;
    Ok(out)
}

/// Decodes a value written by [`encode`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&keys::VALUE_V1, json)) => serde_json::from_slice(json)
            .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}"))),
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "record has version {version}, this release reads version {}; upgrade mailnotary",
            keys::VALUE_V1
        ))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}
