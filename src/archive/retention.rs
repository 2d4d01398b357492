// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Retention, legal holds and the audit log.
//!
//! A message whose rule sets `retention` gets an entry in the `RETAIN`
//! table under its expiry time when its bytes are stored. [`Archive::purge`]
//! walks that table in expiry order up to "now" and deletes the bytes of
//! each expired message, unless its thread is under legal hold, and records
//! the purge; the message record, its receipt and its evidence are never
//! purged, so the message still verifies when someone presents a copy.
//! The clock is a parameter, so that tests (and an operator's dry run)
//! can purge "as of" a given time.
//!
//! A legal hold belongs to a thread: `mailnotary hold --thread ID on`, or a
//! rule with `legal_hold = true` for each message it decides. When two
//! threads merge, a hold on either one holds the merged thread.
//!
//! Every purge and every change of a hold is written to the audit log in
//! the same durable write as the change itself, so the log cannot miss an
//! action that took place.

use serde::{Deserialize, Serialize};

use super::{Archive, ArchiveError, ThreadId, keys, record};
use crate::id::ReceiptId;
use crate::store::{StoreError, Txn};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Milliseconds since the epoch.
    pub at: u64,
    /// Who acted: `operator` for a command, `retention` for a purge, or the
    /// policy rule that set a hold.
    pub actor: String,
    /// `purge`, `hold-on`, `hold-off`, `notified`.
    pub action: String,
    /// What the action concerned, such as a receipt id or a thread.
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Writes an audit entry in the write `txn`.
pub(crate) fn audit_in(txn: &mut Txn<'_>, entry: &AuditEntry) -> Result<(), StoreError> {
    txn.put(keys::audit(entry.at), record::encode(entry)?);
    Ok(())
}

/// A thread's hold as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub since: u64,
    pub by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Turns the hold of `thread` on or off in `txn`, with its audit entry;
/// returns whether anything changed.
pub(crate) fn hold_in(
    txn: &mut Txn<'_>,
    thread: ThreadId,
    on: bool,
    by: &str,
    reason: &str,
    at: u64,
) -> Result<bool, StoreError> {
    let key = keys::hold(thread.0);
    let held = txn.contains(&key)?;
    if held == on {
        return Ok(false);
    }
    if on {
        let hold = Hold {
            since: at,
            by: by.into(),
            reason: reason.into(),
        };
        txn.put(key, record::encode(&hold)?);
    } else {
        txn.delete(key);
    }
    audit_in(
        txn,
        &AuditEntry {
            at,
            actor: by.into(),
            action: if on { "hold-on" } else { "hold-off" }.into(),
            subject: thread.to_string(),
            detail: reason.into(),
        },
    )?;
    Ok(true)
}

/// When a message's bytes were purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub at: u64,
    /// The expiry that was reached.
    pub expired_at: u64,
}

/// What one purge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Messages whose bytes were deleted.
    pub purged: Vec<ReceiptId>,
    /// Expired messages kept because their thread is under legal hold.
    pub held: Vec<ReceiptId>,
}

/// How many expired messages one write purges.
const PURGE_CHUNK: usize = 1000;

impl Archive {
    /// The hold on `thread`, if any.
    pub fn hold(&self, thread: ThreadId) -> Result<Option<Hold>, ArchiveError> {
        match self.store().get(&keys::hold(thread.0))? {
            Some(v) => Ok(Some(record::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Puts `thread` under legal hold or releases it; returns whether the
    /// hold changed.
    pub fn set_hold(
        &self,
        thread: ThreadId,
        on: bool,
        by: &str,
        reason: &str,
        at: u64,
    ) -> Result<bool, ArchiveError> {
        let (by, reason) = (by.to_string(), reason.to_string());
        self.store()
            .write(move |txn| -> Result<bool, ArchiveError> {
                Ok(hold_in(txn, thread, on, &by, &reason, at)?)
            })
    }

    /// When the bytes of `id` were purged, if they were.
    pub fn purged(&self, id: &ReceiptId) -> Result<Option<Purged>, ArchiveError> {
        match self.store().get(&keys::purged(id))? {
            Some(v) => Ok(Some(record::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Deletes the bytes of every message whose retention ended at or
    /// before `now` (milliseconds), except in threads under legal hold.
    pub fn purge(&self, now: u64) -> Result<PurgeReport, ArchiveError> {
        let mut report = PurgeReport::default();
        let mut start = vec![keys::RETAIN];
        let end = keys::key(keys::RETAIN, &[&now.saturating_add(1).to_be_bytes()]);
        loop {
            let mut due: Vec<(Vec<u8>, u64, ReceiptId)> = Vec::new();
            self.store().scan(&start, &end, &mut |k, _| {
                if let (Some(expiry), Some(id)) =
                    (keys::read_u64(&k[1..]), keys::trailing_receipt_id(k))
                {
                    due.push((k.to_vec(), expiry, id));
                }
                due.len() < PURGE_CHUNK
            })?;
            let Some((last, _, _)) = due.last() else {
                return Ok(report);
            };
            start = last.clone();
            start.push(0);

            let mut chunk_purged = Vec::new();
            for (key, expiry, id) in due {
                let Some(record) = self.message(&id)? else {
                    continue;
                };
                let thread = self.thread_of(&record)?;
                if self.hold(thread)?.is_some() {
                    report.held.push(id);
                } else {
                    chunk_purged.push((key, expiry, id));
                }
            }
            if chunk_purged.is_empty() {
                continue;
            }
            let ids: Vec<ReceiptId> = chunk_purged.iter().map(|(_, _, id)| *id).collect();
            self.store().write(move |txn| -> Result<(), ArchiveError> {
                for (key, expiry, id) in chunk_purged {
                    txn.delete(keys::blob(&id));
                    txn.delete(key);
                    let purged = Purged {
                        at: now,
                        expired_at: expiry,
                    };
                    txn.put(keys::purged(&id), record::encode(&purged)?);
                    audit_in(
                        txn,
                        &AuditEntry {
                            at: now,
                            actor: "retention".into(),
                            action: "purge".into(),
                            subject: id.to_string(),
                            detail: "the message's bytes were deleted; its receipt and \
                                     evidence are kept"
                                .into(),
                        },
                    )?;
                }
                Ok(())
            })?;
            report.purged.extend(ids);
        }
    }

    /// The audit log, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>, ArchiveError> {
        self.decode_all(&[keys::AUDIT])
    }

    /// Writes one entry to the audit log.
    pub fn audit(&self, entry: AuditEntry) -> Result<(), ArchiveError> {
        self.store()
            .write(move |txn| -> Result<(), ArchiveError> { Ok(audit_in(txn, &entry)?) })
    }
}
