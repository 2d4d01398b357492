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
//! The same checks run against a receipt and evidence record given from
//! outside ([`verify_with`]), as `verify --receipt` and `verify --bundle`
//! do: the file is then matched against the digests the receipt content
//! records, not against the archive's indexes.
//!
//! Each failure names what broke: a content that matches no receipt, a
//! receipt whose signature fails, an evidence record made for another
//! receipt, a hash tree that does not reach the timestamped root, a token
//! whose signer does not lead to a trusted CA. Signature algorithms and
//! path rules are those of [`crate::signing`].

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Archive, ArchiveError, keys};
use crate::analysis::{Sha256Digest, analyze};
use crate::hashtree::root_from_reduced;
use crate::id::ReceiptId;
use crate::receipt::content::ReceiptContent;
use crate::signing::Trust;
use crate::tsa::token::TokenInfo;
use crate::tsa::{ID_CT_TST_INFO, ID_SHA256};

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
    /// The DKIM signatures checked again against the key records captured
    /// at arrival: what was recorded then and what the check gives now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dkim: Vec<DkimRecheck>,
}

/// One DKIM signature checked again by `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct DkimRecheck {
    pub domain: String,
    pub selector: String,
    /// The result recorded in the receipt at arrival.
    pub recorded: String,
    /// The result of the check repeated now, offline.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Report {
    fn new() -> Report {
        Report {
            verified: false,
            matched: None,
            receipt_id: None,
            stamped_at: None,
            checks: Vec::new(),
            dkim: Vec::new(),
        }
    }

    /// A report of one failed check and nothing else.
    pub fn failed(receipt_id: Option<String>, name: &'static str, detail: String) -> Report {
        let mut report = Report::new();
        report.receipt_id = receipt_id;
        report.push(name, Err(detail));
        report
    }

    fn push(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        self.checks.push(Check { name, ok, detail });
        ok
    }
}

/// The evidence of one message as a verifier receives it: the signed
/// receipt (CMS, DER) and, once stamped, its RFC 4998 evidence record.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub receipt: Vec<u8>,
    pub record: Option<Vec<u8>>,
}

impl Archive {
    /// Verifies `bytes` against the archive: finds the receipt that records
    /// one of its digests, then checks that receipt's evidence.
    pub fn verify_file(&self, bytes: &[u8], trust: &Trust) -> Result<Report, ArchiveError> {
        let Some(id) = self.find_match(bytes)? else {
            let mut report = Report::new();
            report.push(
                "match",
                Err(
                    "the content does not match any receipt: no stored message or \
                     attachment has this file's raw, canonical or part SHA-256"
                        .into(),
                ),
            );
            return Ok(report);
        };
        let Some(receipt) = self.receipt(&id)? else {
            let mut report = Report::new();
            report.receipt_id = Some(id.to_string());
            report.push(
                "receipt",
                Err(format!(
                    "message {id} is still pending: it has no receipt yet; run \
                     `mailnotary stamp` or wait for the stamper"
                )),
            );
            return Ok(report);
        };
        let record = self.evidence(&id)?.map(|e| e.record);
        Ok(verify_with(
            Some(bytes),
            &Evidence {
                receipt: receipt.signed,
                record,
            },
            trust,
        ))
    }

    /// The receipt id of a stored message or part with one of `bytes`'
    /// digests: raw first, then canonical, then part.
    fn find_match(&self, bytes: &[u8]) -> Result<Option<ReceiptId>, ArchiveError> {
        let raw = Sha256Digest::of(bytes);
        if let Some(id) = self
            .store()
            .get(&keys::by_raw(&raw))?
            .and_then(|v| ReceiptId::from_slice(&v))
        {
            return Ok(Some(id));
        }
        let canonical = analyze(bytes).digests.canonical;
        if let Some(id) = self.first_under(keys::BY_CANONICAL, &canonical)? {
            return Ok(Some(id));
        }
        self.first_under(keys::BY_PART, &raw)
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

/// How `bytes` match the digests `content` records, if they do.
pub fn match_content(bytes: &[u8], content: &ReceiptContent) -> Option<(Matched, Sha256Digest)> {
    let raw = Sha256Digest::of(bytes);
    if content.digests.raw[..] == raw.0 {
        return Some((Matched::Raw, raw));
    }
    if content.digests.parts.iter().any(|p| p.sha256[..] == raw.0) {
        // A message is never its own part, so this order costs nothing and
        // spares the canonical pass for attachments.
        return Some((Matched::Part, raw));
    }
    let canonical = analyze(bytes).digests.canonical;
    (content.digests.canonical[..] == canonical.0).then_some((Matched::Canonical, canonical))
}

/// Verifies `bytes` against one receipt and its evidence record, trusting
/// only `trust`. Without `bytes` (a bundle of a hash-only archive holds no
/// message), the receipt, evidence record and token are checked and no
/// match is claimed.
pub fn verify_with(bytes: Option<&[u8]>, evidence: &Evidence, trust: &Trust) -> Report {
    let mut report = Report::new();
    // The content is read before its signature is checked so that the
    // match can be reported either way; nothing is accepted unless the
    // signature check below passes too.
    let content_der = match trust.verify(&evidence.receipt, None) {
        Ok(verified) => {
            report.push(
                "receipt signature",
                Ok(format!(
                    "signed by {}",
                    verified.signer.tbs_certificate.subject
                )),
            );
            verified.content
        }
        Err(e) => {
            report.push(
                "receipt signature",
                Err(format!("the receipt's signature does not verify: {e}")),
            );
            match crate::signing::unverified_content(&evidence.receipt) {
                Some(content) => content,
                None => return report,
            }
        }
    };
    let content = match ReceiptContent::from_der(&content_der) {
        Ok(c) => c,
        Err(e) => {
            report.push(
                "receipt content",
                Err(format!("the receipt content does not decode: {e}")),
            );
            return report;
        }
    };
    report.receipt_id = Some(content.receipt_id.clone());
    match bytes.map(|b| match_content(b, &content)) {
        None => {}
        Some(Some((matched, digest))) => {
            report.matched = Some(matched);
            report.push(
                "match",
                Ok(format!(
                    "{} SHA-256 {digest} is recorded in receipt {}",
                    matched.name(),
                    content.receipt_id
                )),
            );
        }
        Some(None) => {
            report.push(
                "match",
                Err(format!(
                    "the content does not match receipt {}: neither its raw, canonical \
                     nor any part SHA-256 is recorded there",
                    content.receipt_id
                )),
            );
        }
    }

    if let (Some(bytes), Some(Matched::Raw | Matched::Canonical)) = (bytes, report.matched) {
        recheck_dkim(bytes, &content, &mut report);
    }

    let Some(record) = &evidence.record else {
        report.push(
            "evidence record",
            Err("no evidence record: the message is not stamped yet".into()),
        );
        return report;
    };
    let parsed = match crate::ers::parse(record) {
        Ok(p) => p,
        Err(e) => {
            report.push(
                "evidence record",
                Err(format!("the evidence record does not decode: {e}")),
            );
            return report;
        }
    };
    let Some(stamp) = parsed
        .archive_time_stamp_sequence
        .first()
        .and_then(|c| c.first())
    else {
        report.push(
            "evidence record",
            Err("the evidence record holds no timestamp".into()),
        );
        return report;
    };
    let leaf: [u8; 32] = Sha256::digest(&content_der).into();
    let Some(reduced) = stamp.reduced() else {
        report.push(
            "hash tree",
            Err("the evidence record's hash tree holds a value that is not a SHA-256".into()),
        );
        return report;
    };
    // An empty reduced tree means the token stamps this one hash alone.
    let root = root_from_reduced(&leaf, &reduced);
    report.push(
        "hash tree",
        match root {
            Some(root) => Ok(format!(
                "the receipt content's hash leads to root {}",
                hex::encode(root)
            )),
            None => Err(
                "the evidence record is for another message: the hash of this \
                 receipt's content is not among its leaves"
                    .into(),
            ),
        },
    );
    let Some(root) = root else {
        // The token stamps some root, but not one this receipt leads to:
        // checking it would say nothing about this message.
        return report;
    };
    match stamp.token() {
        Ok(token) => {
            let checked = describe_token(&token, &root, trust);
            if let Ok((_, gen_time)) = &checked {
                report.stamped_at = Some(gen_time.clone());
            }
            report.push("timestamp", checked.map(|(detail, _)| detail));
        }
        Err(e) => {
            report.push(
                "timestamp",
                Err(format!("the timestamp token does not decode: {e}")),
            );
        }
    }
    report.verified = report.checks.iter().all(|c| c.ok);
    report
}

/// Checks a batch's TimeStampToken: it stamps `root` with SHA-256 and,
/// when `trust` has anchors, its signature and certificates hold at its
/// genTime. Shared by `verify` and `check`.
pub(crate) fn check_token(
    token: &[u8],
    root: &[u8; 32],
    trust: &Trust,
) -> Result<(TokenInfo, Option<crate::signing::Verified>), String> {
    // The certificates are checked at genTime, read first from the
    // (not yet trusted) token; the signature check below covers it.
    let info = crate::tsa::token::inspect(token)?;
    let verified = if trust.is_empty() {
        None
    } else {
        let verified = trust
            .verify_shared(token, Some(info.gen_time.timestamp()))
            .map_err(|e| {
                format!("the timestamp token is not from a trusted TSA or is damaged: {e}")
            })?;
        if verified.content_type != ID_CT_TST_INFO {
            return Err("the token's content is not a TSTInfo".into());
        }
        Some(verified)
    };
    if info.hash_algorithm != ID_SHA256.to_string() {
        return Err(format!(
            "the token stamps a {} digest; evidence records here use SHA-256",
            info.hash_algorithm
        ));
    }
    if info.imprint != root[..] {
        return Err("the token's imprint is not the root the evidence record leads to".into());
    }
    Ok((info, verified))
}

/// [`check_token`] for `verify`, which always has anchors: a description
/// and genTime.
fn describe_token(
    token: &[u8],
    root: &[u8; 32],
    trust: &Trust,
) -> Result<(String, String), String> {
    let (info, verified) = check_token(token, root, trust)?;
    let signer = verified
        .map(|v| v.signer.tbs_certificate.subject.to_string())
        .ok_or("no trust anchor to check the token's signature with")?;
    let when = info
        .gen_time
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    Ok((
        format!("token over the root, genTime {when}, signed by {signer}"),
        when,
    ))
}

/// The offline verifier, made once per process.
fn offline_dkim() -> Option<&'static crate::dkim::Verifier> {
    static VERIFIER: std::sync::OnceLock<Option<crate::dkim::Verifier>> =
        std::sync::OnceLock::new();
    VERIFIER
        .get_or_init(|| crate::dkim::Verifier::offline().ok())
        .as_ref()
}

/// Checks the DKIM signatures of `bytes` again with the key records the
/// receipt captured at arrival, and the expiry judged at the arrival time,
/// and reports whether each gives the result recorded then. No DNS query
/// is made: the keys may have left DNS long ago.
fn recheck_dkim(bytes: &[u8], content: &ReceiptContent, report: &mut Report) {
    if content.dkim.is_empty() {
        return;
    }
    let Some(verifier) = offline_dkim() else {
        report.push(
            "dkim",
            Err("the DKIM verifier could not start in this process".into()),
        );
        return;
    };
    let at = content.received_at.timestamp().max(0) as u64;
    let now = verifier.recheck(bytes, &content.captured_keys(), at);
    let mut same = true;
    let mut lines = Vec::new();
    for (i, recorded) in content.dkim.iter().enumerate() {
        let again = now.signatures.get(i);
        let result = again.map_or("absent", |v| v.result.as_str());
        same &= result == recorded.result;
        lines.push(format!(
            "{} for d={} s={} (recorded at arrival: {})",
            result, recorded.domain, recorded.selector, recorded.result
        ));
        report.dkim.push(DkimRecheck {
            domain: recorded.domain.clone(),
            selector: recorded.selector.clone(),
            recorded: recorded.result.clone(),
            result: result.to_string(),
            reason: again.and_then(|v| v.reason.clone()),
        });
    }
    let text = format!(
        "{}; checked offline with the key records captured at arrival, not with DNS today",
        lines.join(", ")
    );
    report.push(
        "dkim",
        if same {
            Ok(text)
        } else {
            Err(format!(
                "the DKIM results differ from those recorded: {text}"
            ))
        },
    );
}
