// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `verify`: does this file match something the archive holds, and does
//! its evidence hold up?
//!
//! A file is matched by its raw SHA-256 (the message exactly as received),
//! else by its canonical digest (another mailbox's copy of the message),
//! else by its SHA-256 as a MIME part (an attachment saved on its own).
//! For the message found, every link of the evidence is then checked with
//! no trust in the store's own records: the receipt's CMS signature and
//! certificate up to a trusted CA, the receipt content naming the matched
//! digest, the evidence record's hash tree from the receipt content to the
//! batch root, and the timestamp token's signature, certificate (valid at
//! its genTime) and imprint of that root.
//!
//! Known limit: signatures are checked for ECDSA P-256 certificates issued
//! directly by a trust anchor, which is what the built-in TSA and the local
//! CA produce; RSA signatures and intermediate CAs of external TSAs come
//! with the external TSA client. Tokens are read with rasn, so fractional
//! genTime is fine.

use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use super::{Archive, ArchiveError, keys};
use crate::analysis::{Sha256Digest, analyze};
use crate::hashtree::root_from_reduced;
use crate::id::ReceiptId;
use crate::receipt::content::ReceiptContent;
use crate::tsa::ID_CT_TST_INFO;

/// How the file matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Matched {
    Raw,
    Canonical,
    Part,
}

impl Matched {
    /// The name used in output: raw, canonical or part.
    pub fn name(self) -> &'static str {
        match self {
            Matched::Raw => "raw",
            Matched::Canonical => "canonical",
            Matched::Part => "part",
        }
    }
}

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The outcome of verifying one file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub verified: bool,
    pub matched: Option<Matched>,
    pub receipt_id: Option<String>,
    /// genTime of the batch's timestamp token, RFC 3339.
    pub stamped_at: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        self.checks.push(Check { name, ok, detail });
        ok
    }
}

impl Archive {
    /// Verifies `bytes` against the archive, trusting `anchors` as CAs.
    pub fn verify_file(
        &self,
        bytes: &[u8],
        anchors: &[Certificate],
    ) -> Result<Report, ArchiveError> {
        let mut report = Report {
            verified: false,
            matched: None,
            receipt_id: None,
            stamped_at: None,
            checks: Vec::new(),
        };
        let Some((id, matched, digest)) = self.find_match(bytes)? else {
            report.push(
                "match",
                Err("no stored message or attachment has this file's digests".into()),
            );
            return Ok(report);
        };
        report.matched = Some(matched);
        report.receipt_id = Some(id.to_string());
        report.push(
            "match",
            Ok(format!(
                "{} SHA-256 {digest} matches receipt {id}",
                matched.name()
            )),
        );

        let Some(receipt) = self.receipt(&id)? else {
            report.push(
                "receipt",
                Err("the message is still pending: no receipt yet".into()),
            );
            return Ok(report);
        };
        let mut all = report.push(
            "receipt signature",
            crate::signing::verify(&receipt.signed, anchors, None).and_then(|v| {
                if v.content == receipt.content {
                    Ok(format!("signed by {}", v.signer.tbs_certificate.subject))
                } else {
                    Err("the signed content differs from the stored content".into())
                }
            }),
        );
        all &= report.push(
            "receipt content",
            content_names(&receipt.content, &id, matched, &digest),
        );

        let Some(evidence) = self.evidence(&id)? else {
            report.push("evidence", Err("the message is not stamped yet".into()));
            return Ok(report);
        };
        let parsed = crate::ers::parse(&evidence.record)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("evidence of {id}: {e}")))?;
        let Some(stamp) = parsed
            .archive_time_stamp_sequence
            .first()
            .and_then(|c| c.first())
        else {
            report.push("evidence record", Err("it holds no timestamp".into()));
            return Ok(report);
        };
        let leaf: [u8; 32] = Sha256::digest(&receipt.content).into();
        let root = stamp.reduced().and_then(|r| root_from_reduced(&leaf, &r));
        all &= report.push(
            "hash tree",
            match root {
                Some(root) => Ok(format!(
                    "the receipt content leads to root {}",
                    hex::encode(root)
                )),
                None => Err("the receipt content's hash is not in the evidence record".into()),
            },
        );
        let token = stamp
            .token()
            .map_err(|e| crate::store::StoreError::Corrupt(format!("evidence of {id}: {e}")))?;
        let checked = check_token(&token, root, anchors);
        if let Ok((_, gen_time)) = &checked {
            report.stamped_at = Some(gen_time.clone());
        }
        all &= report.push("timestamp", checked.map(|(detail, _)| detail));
        report.verified = all;
        Ok(report)
    }

    fn find_match(
        &self,
        bytes: &[u8],
    ) -> Result<Option<(ReceiptId, Matched, Sha256Digest)>, ArchiveError> {
        let raw = Sha256Digest::of(bytes);
        if let Some(id) = self
            .store()
            .get(&keys::by_raw(&raw))?
            .and_then(|v| ReceiptId::from_slice(&v))
        {
            return Ok(Some((id, Matched::Raw, raw)));
        }
        let canonical = analyze(bytes).digests.canonical;
        if let Some(id) = self.first_under(keys::BY_CANONICAL, &canonical)? {
            return Ok(Some((id, Matched::Canonical, canonical)));
        }
        if let Some(id) = self.first_under(keys::BY_PART, &raw)? {
            return Ok(Some((id, Matched::Part, raw)));
        }
        Ok(None)
    }

    fn first_under(
        &self,
        table: u8,
        digest: &Sha256Digest,
    ) -> Result<Option<ReceiptId>, ArchiveError> {
        let prefix = keys::key(table, &[&digest.0]);
        let mut found = None;
        self.store().scan_prefix(&prefix, &mut |k, _| {
            found = keys::trailing_receipt_id(k);
            false
        })?;
        Ok(found)
    }
}

/// Checks that the receipt content is about `id` and names `digest` in the
/// matched role.
fn content_names(
    content: &[u8],
    id: &ReceiptId,
    matched: Matched,
    digest: &Sha256Digest,
) -> Result<String, String> {
    let c = ReceiptContent::from_der(content).map_err(|e| format!("does not decode: {e}"))?;
    if c.receipt_id != id.to_string() {
        return Err(format!("names receipt {}, not {id}", c.receipt_id));
    }
    let named = match matched {
        Matched::Raw => c.digests.raw[..] == digest.0,
        Matched::Canonical => c.digests.canonical[..] == digest.0,
        Matched::Part => c.digests.parts.iter().any(|p| p.sha256[..] == digest.0),
    };
    if named {
        Ok(format!(
            "receipt {id} records this {} digest",
            matched.name()
        ))
    } else {
        Err("the receipt content does not record this file's digest".into())
    }
}

/// Verifies a TimeStampToken over `root`; returns a description and genTime.
fn check_token(
    token: &[u8],
    root: Option<[u8; 32]>,
    anchors: &[Certificate],
) -> Result<(String, String), String> {
    // The certificates are checked at genTime, so the token's content is
    // read first (without trusting it) to learn that time.
    let verified = crate::signing::verify(token, anchors, None)?;
    if verified.content_type != ID_CT_TST_INFO {
        return Err("the token's content is not a TSTInfo".into());
    }
    let info = crate::tsa::token::inspect(token)?;
    let gen_time = info.gen_time.timestamp();
    crate::signing::verify(token, anchors, Some(gen_time))?;
    if Some(info.imprint.as_slice()) != root.as_ref().map(|r| &r[..]) {
        return Err("the token's imprint is not the batch root".into());
    }
    let when = info
        .gen_time
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    Ok((
        format!(
            "token over the root, genTime {when}, signed by {}",
            verified.signer.tbs_certificate.subject
        ),
        when,
    ))
}
