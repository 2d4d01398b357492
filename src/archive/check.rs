// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Re-verification of everything the archive holds.
//!
//! For every message record, `check` reads the kept bytes, hashes them
//! again and compares the raw digest, the canonical digest and every part
//! digest with what was recorded when the message arrived; it also checks
//! that the indexes lead back to the message. Any difference means the
//! store was changed outside mailnotary or damaged, and is reported with
//! the receipt id. Receipts, evidence records and the batch chain join
//! this check when timestamps exist.

use super::{Archive, ArchiveError, MessageRecord, keys, record};
use crate::analysis::analyze;

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
    pub problems: Vec<Problem>,
}

impl Archive {
    /// Checks every stored message; `progress` is called after each one.
    pub fn check(&self, progress: &mut dyn FnMut(u64)) -> Result<CheckReport, ArchiveError> {
        let mut report = CheckReport::default();
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
                    Ok(r) => self.check_one(&r, &mut report)?,
                    Err(e) => report.problems.push(Problem {
                        subject: hex::encode(&key),
                        detail: e.to_string(),
                    }),
                }
                progress(report.messages);
            }
        }
        Ok(report)
    }

    fn check_one(&self, r: &MessageRecord, report: &mut CheckReport) -> Result<(), ArchiveError> {
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

        let raw = match self.raw(&id) {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                if r.mode == super::Mode::Archive {
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
