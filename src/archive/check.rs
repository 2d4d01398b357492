// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Re-verification of everything the archive holds.
//!
//! For every message record, `check` reads the kept bytes, hashes them
//! again and compares the raw digest, the canonical digest and every part
//! digest with what was recorded when the message arrived; it also checks
//! that the indexes lead back to the message. Any difference means the
//! store was changed outside mailnotary or damaged, and is reported with
//! the receipt id.
//!
//! For stamped messages it also checks the evidence: the receipt content
//! decodes and carries the recorded digests, the evidence record's reduced
//! hash tree leads from the content's hash to its batch's root, and the
//! record holds that batch's token. Finally it walks the batch chain: each
//! batch's first leaf must be the root of the batch before it, and its
//! token must be over its root. Given trust trust, it also verifies every
//! receipt's and every token's signature.

use super::{Archive, ArchiveError, MessageRecord, keys, record};
use sha2::{Digest, Sha256};

use crate::analysis::analyze;
use crate::hashtree::root_from_reduced;
use crate::receipt::content::ReceiptContent;

/// One problem found by [`Archive::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The receipt id concerned, or the key when no record could be read.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

/// The outcome of a full check.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Messages whose record was read.
    pub messages: u64,
    /// Messages whose kept bytes were hashed again.
    pub blobs: u64,
    /// Batches found in the chain.
    pub batches: u64,
    /// Whether receipt and token signatures were verified.
    pub signatures_checked: bool,
    pub problems: Vec<Problem>,
}

impl Archive {
    /// Checks every stored message; `progress` is called after each one.
    /// With trust anchors (the trusted CA certificates), receipt and token
    /// signatures are verified too; without, they are skipped and
    /// [`CheckReport::signatures_checked`] says so.
    pub fn check(
        &self,
        trust: &crate::signing::Trust,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CheckReport, ArchiveError> {
        let mut report = CheckReport {
            signatures_checked: !trust.is_empty(),
            ..CheckReport::default()
        };
        // Records are read in chunks of CHUNK to bound memory on large
        // stores; each chunk starts just after the last key of the one before.
        const CHUNK: usize = 1024;
        let end = [keys::MESSAGE + 1];
        let mut start = vec![keys::MESSAGE];
        let mut entries = Vec::with_capacity(CHUNK);
        loop {
            self.store().scan(&start, &end, &mut |k, v| {
                entries.push((k.to_vec(), v.to_vec()));
                entries.len() < CHUNK
            })?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            start = last.clone();
            start.push(0);
            for (key, value) in entries.drain(..) {
                report.messages += 1;
                match record::decode::<MessageRecord>(&value) {
                    Ok(r) => self.check_one(&r, trust, &mut report)?,
                    Err(e) => report.problems.push(Problem {
                        subject: hex::encode(&key),
                        detail: e.to_string(),
                    }),
                }
                progress(report.messages);
            }
        }
        self.check_batch_chain(trust, &mut report)?;
        Ok(report)
    }

    fn check_batch_chain(
        &self,
        trust: &crate::signing::Trust,
        report: &mut CheckReport,
    ) -> Result<(), ArchiveError> {
        let Some(last) = self.last_batch()? else {
            return Ok(());
        };
        let mut previous: Option<String> = None;
        for number in 1..=last.number {
            let Some(batch) = self.batch(number)? else {
                report.problems.push(Problem {
                    subject: format!("batch {number}"),
                    detail: "missing from the chain".into(),
                });
                previous = None;
                continue;
            };
            report.batches += 1;
            if let Err(detail) = self.check_token(&batch, trust) {
                report.problems.push(Problem {
                    subject: format!("batch {number}"),
                    detail,
                });
            }
            if number > 1 && previous.is_some() && batch.previous_root != previous {
                report.problems.push(Problem {
                    subject: format!("batch {number}"),
                    detail: "its first leaf is not the root of the batch before it".into(),
                });
            }
            previous = Some(batch.root);
        }
        Ok(())
    }

    /// The batch's token: its imprint is the root and, with trust, its
    /// signature holds.
    fn check_token(
        &self,
        batch: &super::evidence::Batch,
        trust: &crate::signing::Trust,
    ) -> Result<(), String> {
        let token = self
            .batch_token(batch.number)
            .map_err(|e| e.to_string())?
            .ok_or("its token is missing")?;
        check_one_token(&token, &batch.root, trust).map_err(|e| format!("its token: {e}"))?;
        let extra = self
            .batch_extra_tokens(batch.number)
            .map_err(|e| e.to_string())?;
        if extra.len() != batch.also_stamped_by.len() {
            return Err(format!(
                "{} further token(s) recorded, {} stored",
                batch.also_stamped_by.len(),
                extra.len()
            ));
        }
        for (token, tsa) in extra.iter().zip(&batch.also_stamped_by) {
            check_one_token(token, &batch.root, trust)
                .map_err(|e| format!("the token of {tsa}: {e}"))?;
        }
        Ok(())
    }

    fn check_evidence(
        &self,
        r: &MessageRecord,
        id: &crate::id::ReceiptId,
        trust: &crate::signing::Trust,
        problem: &mut dyn FnMut(String),
    ) -> Result<(), ArchiveError> {
        // A record that names a batch no longer in the store is a finding
        // about the store, not a reason to stop checking it.
        let evidence = match self.evidence(id) {
            Ok(Some(evidence)) => evidence,
            Ok(None) => {
                if !self.is_pending(id)? {
                    problem("neither stamped nor pending".into());
                }
                return Ok(());
            }
            Err(e) => {
                problem(e.to_string());
                return Ok(());
            }
        };
        let Some(crate::archive::evidence::Receipt { signed, content }) = self.receipt(id)? else {
            problem("stamped, but its receipt is missing".into());
            return Ok(());
        };
        if !trust.is_empty() {
            match trust.verify(&signed, None) {
                Ok(v) if v.content == content => {}
                Ok(_) => problem("the signed receipt is over other content".into()),
                Err(e) => problem(format!("the receipt signature: {e}")),
            }
        }
        match ReceiptContent::from_der(&content) {
            Ok(c) => {
                if c.digests.raw[..] != r.digests.raw.0[..]
                    || c.digests.canonical[..] != r.digests.canonical.0[..]
                    || c.receipt_id != r.receipt_id
                {
                    problem("the receipt content does not match the message record".into());
                }
            }
            Err(e) => problem(format!("the receipt content does not decode: {e}")),
        }
        let leaf: [u8; 32] = Sha256::digest(&content).into();
        let parsed = match crate::ers::parse(&evidence.record) {
            Ok(p) => p,
            Err(e) => {
                problem(e.to_string());
                return Ok(());
            }
        };
        let Some(stamp) = parsed
            .archive_time_stamp_sequence
            .first()
            .and_then(|c| c.first())
        else {
            problem("the evidence record holds no timestamp".into());
            return Ok(());
        };
        let reached = stamp
            .reduced()
            .and_then(|reduced| root_from_reduced(&leaf, &reduced));
        if reached.map(hex::encode).as_deref() != Some(evidence.batch.root.as_str()) {
            problem(format!(
                "the evidence record does not lead to the root of batch {}",
                evidence.batch.number
            ));
        }
        let token = self.batch_token(evidence.batch.number)?;
        if stamp.token().ok() != token {
            problem(format!(
                "the evidence record's token is not batch {}'s",
                evidence.batch.number
            ));
        }
        Ok(())
    }

    fn check_one(
        &self,
        r: &MessageRecord,
        trust: &crate::signing::Trust,
        report: &mut CheckReport,
    ) -> Result<(), ArchiveError> {
        let mut problem = |detail: String| {
            report.problems.push(Problem {
                subject: r.receipt_id.clone(),
                detail,
            })
        };
        let id = match r.id() {
            Ok(id) => id,
            Err(e) => {
                problem(e.to_string());
                return Ok(());
            }
        };

        match self.store().get(&keys::by_raw(&r.digests.raw))? {
            Some(v) if v.as_slice() == id.as_bytes() => {}
            _ => problem("the raw digest index does not lead to this message".into()),
        }
        if let Some(mid) = &r.metadata.message_id
            && self.store().get(&keys::by_message_id(mid, &id))?.is_none()
        {
            problem("the Message-ID index does not lead to this message".into());
        }
        if let Err(e) = self.thread_of(r) {
            problem(format!("thread: {e}"));
        }
        self.check_evidence(r, &id, trust, &mut problem)?;

        let raw = match self.raw(&id) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                if r.mode == super::Mode::Archive && self.purged(&id)?.is_none() {
                    problem("archive-mode message has no stored bytes".into());
                }
                return Ok(());
            }
            Err(e) => {
                problem(e.to_string());
                return Ok(());
            }
        };
        report.blobs += 1;
        let again = analyze(&raw);
        if again.digests.raw != r.digests.raw {
            problem(format!(
                "stored bytes hash to {}, the record says {}",
                again.digests.raw, r.digests.raw
            ));
            return Ok(());
        }
        if r.digests.canonical_algorithm == crate::canonical::ALGORITHM
            && again.digests.canonical != r.digests.canonical
        {
            problem(format!(
                "canonical digest is now {}, the record says {}",
                again.digests.canonical, r.digests.canonical
            ));
        }
        if again.digests.parts != r.digests.parts {
            problem("part digests differ from the record".into());
        }
        Ok(())
    }
}

/// A token stamps `root` (hex) and, with anchors, its signature holds at
/// its genTime.
fn check_one_token(token: &[u8], root: &str, trust: &crate::signing::Trust) -> Result<(), String> {
    let root: [u8; 32] = hex::decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or("the batch record's root is not a SHA-256 in hex")?;
    super::verify::check_token(token, &root, trust).map(|_| ())
}
