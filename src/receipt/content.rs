// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The receipt content: what the gateway attests about one message, as DER.
//!
//! The ASN.1 module (written out in `docs/formats.md`) uses AUTOMATIC TAGS:
//! every field of a SEQUENCE and every alternative of a CHOICE carries a
//! context tag equal to its position, so that optional fields never clash.
//! The structures are defined with rasn and encoded with its DER encoder.
//! Strings are UTF8String; digests are OCTET STRINGs of 32 bytes; times are
//! GeneralizedTime in UTC with milliseconds.

use rasn::prelude::*;

use crate::archive::{MessageRecord, Mode};
use crate::canonical;
use crate::envelope::Source;

/// The version written by this release.
pub const VERSION: u8 = 1;

/// ReceiptContent: the signed statement about one message.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct ReceiptContent {
    pub version: u8,
    pub receipt_id: Utf8String,
    pub gateway: Gateway,
    pub received_at: GeneralizedTime,
    pub source: ReceiptSource,
    pub message: MessageFields,
    pub digests: ReceiptDigests,
    /// One entry per DKIM-Signature, with the key record it was checked
    /// with; empty when the message has none or the policy turned DKIM off.
    pub dkim: SequenceOf<DkimResult>,
    pub policy: PolicyFields,
    /// The ARC chain's result, when the message has ARC sets.
    pub arc: Option<ArcResult>,
}

/// Who issued the receipt.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct Gateway {
    pub name: Utf8String,
    pub organization: Option<Utf8String>,
    /// The applicant's statement, when a policy sets one.
    pub statement: Option<Utf8String>,
}

/// Where the message came from.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
pub enum ReceiptSource {
    Smtp(SmtpSource),
    Imap(ImapSource),
    Import(ImportSource),
}

#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct SmtpSource {
    pub peer: Utf8String,
    pub helo: Utf8String,
    pub mail_from: Utf8String,
    pub rcpt_to: SequenceOf<Utf8String>,
    pub tls: Option<Utf8String>,
}

#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct ImapSource {
    pub server: Utf8String,
    pub account: Utf8String,
    pub folder: Utf8String,
    pub uid_validity: u32,
    pub uid: u32,
}

#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct ImportSource {
    pub path: Utf8String,
    pub mbox_index: Option<u64>,
}

/// The message's own header fields, as written by the sender.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct MessageFields {
    pub message_id: Option<Utf8String>,
    pub date: Option<Utf8String>,
    pub from: SequenceOf<Utf8String>,
    pub to: SequenceOf<Utf8String>,
    pub cc: SequenceOf<Utf8String>,
    pub subject: Option<Utf8String>,
    pub in_reply_to: SequenceOf<Utf8String>,
    pub references: SequenceOf<Utf8String>,
}

/// The digests of the message.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct ReceiptDigests {
    /// SHA-256 of the raw bytes.
    pub raw: OctetString,
    /// SHA-256 of the canonical form.
    pub canonical: OctetString,
    /// The canonicalization's name, such as "mailnotary-relaxed-v1".
    pub canonicalization: Utf8String,
    /// The header fields the canonical form takes, in order.
    pub header_fields: SequenceOf<Utf8String>,
    pub parts: SequenceOf<PartEntry>,
}

#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct PartEntry {
    pub path: Utf8String,
    pub content_type: Utf8String,
    pub file_name: Option<Utf8String>,
    pub size: u64,
    pub sha256: OctetString,
}

/// One DKIM signature's result, with the key record it was checked with.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct DkimResult {
    pub domain: Utf8String,
    pub selector: Utf8String,
    pub algorithm: Utf8String,
    /// "pass", "fail", "neutral", "permerror" or "temperror".
    pub result: Utf8String,
    pub reason: Option<Utf8String>,
    pub key: KeyRecord,
}

/// A DNS key record as fetched at arrival.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct KeyRecord {
    /// "selector._domainkey.domain".
    pub name: Utf8String,
    /// The TXT record's bytes (its strings joined).
    pub record: Option<OctetString>,
    /// SHA-256 of `record`.
    pub sha256: Option<OctetString>,
    /// Why there is no record: "no such record", or the DNS error.
    pub missing: Option<Utf8String>,
}

/// The ARC chain's result (RFC 8617).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct ArcResult {
    pub result: Utf8String,
    pub reason: Option<Utf8String>,
    /// The number of ARC sets.
    pub sets: u32,
    /// The key records of the seals and of the last message signature.
    pub keys: SequenceOf<KeyRecord>,
}

impl KeyRecord {
    fn of(key: &crate::dkim::CapturedKey) -> KeyRecord {
        KeyRecord {
            name: key.name.clone(),
            record: key
                .record
                .as_ref()
                .map(|r| OctetString::from_slice(r.as_bytes())),
            sha256: key
                .sha256
                .as_ref()
                .and_then(|h| hex::decode(h).ok())
                .map(OctetString::from),
            missing: key.missing.clone(),
        }
    }

    /// The captured key this entry holds.
    pub fn captured(&self) -> crate::dkim::CapturedKey {
        crate::dkim::CapturedKey {
            name: self.name.clone(),
            record: self
                .record
                .as_ref()
                .map(|r| String::from_utf8_lossy(r).into_owned()),
            sha256: self.sha256.as_ref().map(hex::encode),
            missing: self.missing.clone(),
        }
    }
}

impl ReceiptContent {
    /// Every key record the receipt holds, DKIM and ARC, once each.
    pub fn captured_keys(&self) -> Vec<crate::dkim::CapturedKey> {
        let mut keys: Vec<crate::dkim::CapturedKey> = Vec::new();
        let all = self
            .dkim
            .iter()
            .map(|d| &d.key)
            .chain(self.arc.iter().flat_map(|a| a.keys.iter()));
        for key in all {
            if !keys.iter().any(|k| k.name == key.name) {
                keys.push(key.captured());
            }
        }
        keys
    }
}

fn dkim_fields(report: Option<&crate::dkim::DkimReport>) -> (Vec<DkimResult>, Option<ArcResult>) {
    let Some(report) = report else {
        return (Vec::new(), None);
    };
    let missing = |name: String| crate::dkim::CapturedKey {
        name,
        record: None,
        sha256: None,
        missing: Some("no record was looked up".into()),
    };
    let signatures = report
        .signatures
        .iter()
        .map(|v| {
            let name = v.key_name();
            let key = report.key(&name).cloned().unwrap_or_else(|| missing(name));
            DkimResult {
                domain: v.domain.clone(),
                selector: v.selector.clone(),
                algorithm: v.algorithm.clone(),
                result: v.result.clone(),
                reason: v.reason.clone(),
                key: KeyRecord::of(&key),
            }
        })
        .collect();
    let signature_keys: Vec<String> = report.signatures.iter().map(|v| v.key_name()).collect();
    let arc = report.arc.as_ref().map(|a| ArcResult {
        result: a.result.clone(),
        reason: a.reason.clone(),
        sets: a.sets,
        keys: report
            .keys
            .iter()
            .filter(|k| !signature_keys.contains(&k.name))
            .map(KeyRecord::of)
            .collect(),
    });
    (signatures, arc)
}

/// The policy applied to the message.
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct PolicyFields {
    /// The name of the policy rule that decided for the message.
    pub name: Utf8String,
    /// "archive" or "hash-only".
    pub mode: Utf8String,
    /// The retention period as the rule wrote it, such as "7y".
    pub retention: Option<Utf8String>,
    /// The header fields the rule kept out of this receipt ("subject",
    /// "to", ...): absent from `message` on purpose, not missing from the
    /// message.
    pub withheld: SequenceOf<Utf8String>,
}

/// Who the gateway is, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Issuer {
    pub name: String,
    pub organization: Option<String>,
}

impl ReceiptContent {
    /// The content for a stored message.
    pub fn for_record(record: &MessageRecord, issuer: &Issuer) -> ReceiptContent {
        let m = &record.metadata;
        let mailboxes = |list: &[crate::analysis::Mailbox]| -> Vec<String> {
            list.iter().map(ToString::to_string).collect()
        };
        let received_at =
            chrono::DateTime::from_timestamp_millis(record.envelope.received_at as i64)
                .unwrap_or_default()
                .fixed_offset();
        let (dkim, arc) = dkim_fields(record.dkim.as_ref());
        ReceiptContent {
            version: VERSION,
            receipt_id: record.receipt_id.clone(),
            gateway: Gateway {
                name: issuer.name.clone(),
                organization: issuer.organization.clone(),
                statement: record.policy.statement.clone(),
            },
            received_at,
            source: match &record.envelope.source {
                Source::Smtp {
                    peer,
                    helo,
                    mail_from,
                    rcpt_to,
                    tls,
                } => ReceiptSource::Smtp(SmtpSource {
                    peer: peer.clone(),
                    helo: helo.clone(),
                    mail_from: mail_from.clone(),
                    rcpt_to: rcpt_to.clone(),
                    tls: tls.clone(),
                }),
                Source::Imap {
                    server,
                    account,
                    folder,
                    uid_validity,
                    uid,
                } => ReceiptSource::Imap(ImapSource {
                    server: server.clone(),
                    account: account.clone(),
                    folder: folder.clone(),
                    uid_validity: *uid_validity,
                    uid: *uid,
                }),
                Source::Import { path, mbox_index } => ReceiptSource::Import(ImportSource {
                    path: path.clone(),
                    mbox_index: *mbox_index,
                }),
            },
            message: MessageFields {
                message_id: m.message_id.clone(),
                date: m.date.clone(),
                from: mailboxes(&m.from),
                to: mailboxes(&m.to),
                cc: mailboxes(&m.cc),
                subject: m.subject.clone(),
                in_reply_to: m.in_reply_to.clone(),
                references: m.references.clone(),
            },
            digests: ReceiptDigests {
                raw: OctetString::from_slice(&record.digests.raw.0),
                canonical: OctetString::from_slice(&record.digests.canonical.0),
                canonicalization: record.digests.canonical_algorithm.clone(),
                header_fields: canonical::HEADER_FIELDS
                    .iter()
                    .map(|h| h.to_string())
                    .collect(),
                parts: record
                    .digests
                    .parts
                    .iter()
                    .map(|p| PartEntry {
                        path: p.path.clone(),
                        content_type: p.content_type.clone(),
                        file_name: p.filename.clone(),
                        size: p.size,
                        sha256: OctetString::from_slice(&p.sha256.0),
                    })
                    .collect(),
            },
            dkim,
            arc,
            policy: PolicyFields {
                // Records from before policies were kept by the default.
                name: match record.policy.rule.as_str() {
                    "" => "default".into(),
                    rule => rule.into(),
                },
                mode: match record.mode {
                    Mode::Archive => "archive",
                    Mode::HashOnly => "hash-only",
                }
                .into(),
                retention: record.policy.retention.clone(),
                withheld: record.policy.withheld.clone(),
            },
        }
    }

    /// The DER encoding, which is what is hashed into the batch tree and
    /// signed in the receipt.
    pub fn to_der(&self) -> Result<Vec<u8>, rasn::error::EncodeError> {
        rasn::der::encode(self)
    }

    /// Reads a DER receipt content.
    pub fn from_der(der: &[u8]) -> Result<ReceiptContent, rasn::error::DecodeError> {
        rasn::der::decode(der)
    }
}
