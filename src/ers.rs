// SPDX-License-Identifier: Apache-2.0 OR MIT
//! RFC 4998 evidence records: the proof that a data object existed when a
//! batch was timestamped.
//!
//! A record holds one ArchiveTimeStamp: the reduced hash tree leading from
//! the object's hash to the batch root (see [`crate::hashtree`]) and the
//! RFC 3161 token over that root. Renewals (more ArchiveTimeStamps in the
//! chain, more chains in the sequence) are part of the syntax and decode
//! here, but this release writes records with a single stamp.
//!
//! The ASN.1 module of RFC 4998 uses IMPLICIT tags. The optional
//! `cryptoInfos` and `encryptionInfo` fields of EvidenceRecord, and the
//! `attributes` of ArchiveTimeStamp, are never written by mailnotary and are
//! not read either: a record that carries them is refused as not ours
//! rather than half understood.

use cms::content_info::ContentInfo;
use der::asn1::OctetString;
use der::{Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;

use crate::hashtree::Hash;
use crate::tsa::ID_SHA256;

/// EvidenceRecord (RFC 4998 §3), as written by mailnotary.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EvidenceRecord {
    /// Always 1.
    pub version: u8,
    pub digest_algorithms: Vec<AlgorithmIdentifierOwned>,
    /// ArchiveTimeStampSequence: chains of ArchiveTimeStamps.
    pub archive_time_stamp_sequence: Vec<Vec<ArchiveTimeStamp>>,
}

/// ArchiveTimeStamp (RFC 4998 §4.1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct ArchiveTimeStamp {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub digest_algorithm: Option<AlgorithmIdentifierOwned>,
    /// The lists of hashes from the object to the root; absent when the
    /// object is the only one under the timestamp.
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    pub reduced_hashtree: Option<Vec<Vec<OctetString>>>,
    /// The RFC 3161 TimeStampToken over the root.
    pub time_stamp: ContentInfo,
}

/// Why an evidence record could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErsError {
    #[error("the timestamp token is not a CMS ContentInfo: {0}")]
    Token(der::Error),
    #[error("not an RFC 4998 evidence record written by mailnotary: {0}")]
    Decode(der::Error),
    #[error("internal error encoding an evidence record (please report this bug): {0}")]
    Encode(der::Error),
}

fn sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    }
}

/// Builds the DER EvidenceRecord for one object from its reduced hash tree
/// and the token over the root.
pub fn build(reduced: &[Vec<Hash>], token: &[u8]) -> Result<Vec<u8>, ErsError> {
    let time_stamp = ContentInfo::from_der(token).map_err(ErsError::Token)?;
    let reduced_hashtree = if reduced.is_empty() {
        None
    } else {
        Some(
            reduced
                .iter()
                .map(|list| {
                    list.iter()
                        .map(|h| OctetString::new(h.to_vec()))
                        .collect::<der::Result<Vec<_>>>()
                })
                .collect::<der::Result<Vec<_>>>()
                .map_err(ErsError::Encode)?,
        )
    };
    EvidenceRecord {
        version: 1,
        digest_algorithms: vec![sha256()],
        archive_time_stamp_sequence: vec![vec![ArchiveTimeStamp {
            digest_algorithm: Some(sha256()),
            reduced_hashtree,
            time_stamp,
        }]],
    }
    .to_der()
    .map_err(ErsError::Encode)
}

/// Reads a DER EvidenceRecord.
pub fn parse(der: &[u8]) -> Result<EvidenceRecord, ErsError> {
    EvidenceRecord::from_der(der).map_err(ErsError::Decode)
}

impl ArchiveTimeStamp {
    /// The reduced hash tree as hashes; `None` if a value is not 32 bytes.
    pub fn reduced(&self) -> Option<Vec<Vec<Hash>>> {
        self.reduced_hashtree
            .iter()
            .flatten()
            .map(|list| {
                list.iter()
                    .map(|h| h.as_bytes().try_into().ok())
                    .collect::<Option<Vec<Hash>>>()
            })
            .collect()
    }

    /// The DER TimeStampToken.
    pub fn token(&self) -> Result<Vec<u8>, ErsError> {
        self.time_stamp.to_der().map_err(ErsError::Encode)
    }
}
