// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The queue of receipt notifications.
//!
//! A message whose rule has `notify` addresses gets a queue entry in the
//! same durable write as the message itself, so a notification is never
//! lost between the 250 and the send. The sender ([`crate::notify`]) takes
//! entries whose message is stamped, sends one mail each, and removes the
//! entry once the smarthost accepted it (with an audit entry), or records
//! the failure and the time of the next attempt. Ingest never waits for
//! the smarthost.

use serde::{Deserialize, Serialize};

use super::retention::{AuditEntry, audit_in};
use super::{Archive, ArchiveError, keys, record};
use crate::id::ReceiptId;
use crate::store::{StoreError, Txn};

/// A notification waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The addresses to notify.
    pub to: Vec<String>,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (milliseconds); 0 for at once.
    #[serde(default)]
    pub next_at: u64,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Queues a notification for `id` in `txn`.
pub(crate) fn queue_in(
    txn: &mut Txn<'_>,
    id: &ReceiptId,
    to: Vec<String>,
) -> Result<(), StoreError> {
    let n = Notification {
        to,
        attempts: 0,
        next_at: 0,
        last_error: None,
    };
    txn.put(keys::notify(id), record::encode(&n)?);
    Ok(())
}

impl Archive {
    /// Up to `max` queued notifications due at `now` whose message is
    /// stamped, oldest message first.
    pub fn notifications_due(
        &self,
        now: u64,
        max: usize,
    ) -> Result<Vec<(ReceiptId, Notification)>, ArchiveError> {
        let mut entries = Vec::new();
        let mut error = None;
        self.store().scan_prefix(&[keys::NOTIFY], &mut |k, v| {
            match (
                ReceiptId::from_slice(&k[1..]),
                record::decode::<Notification>(v),
            ) {
                (Some(id), Ok(n)) => entries.push((id, n)),
                (_, Err(e)) => error = Some(e),
                (None, _) => {}
            }
            error.is_none()
        })?;
        if let Some(e) = error {
            return Err(e.into());
        }
        let mut due = Vec::new();
        for (id, n) in entries {
            if due.len() >= max {
                break;
            }
            if n.next_at <= now && !self.is_pending(&id)? {
                due.push((id, n));
            }
        }
        Ok(due)
    }

    /// How many notifications wait.
    pub fn notifications_queued(&self) -> Result<u64, ArchiveError> {
        let mut count = 0;
        self.store().scan_prefix(&[keys::NOTIFY], &mut |_, _| {
            count += 1;
            true
        })?;
        Ok(count)
    }

    /// The notification of `id` was accepted by the smarthost.
    pub fn notification_sent(&self, id: ReceiptId, at: u64) -> Result<(), ArchiveError> {
        self.store().write(move |txn| -> Result<(), ArchiveError> {
            let Some(v) = txn.get(&keys::notify(&id))? else {
                return Ok(());
            };
            let n: Notification = record::decode(&v)?;
            txn.delete(keys::notify(&id));
            audit_in(
                txn,
                &AuditEntry {
                    at,
                    actor: "notifier".into(),
                    action: "notified".into(),
                    subject: id.to_string(),
                    detail: format!("receipt mailed to {}", n.to.join(", ")),
                },
            )?;
            Ok(())
        })
    }

    /// The notification of `id` failed with `error`; try again at
    /// `next_at`.
    pub fn notification_failed(
        &self,
        id: ReceiptId,
        error: String,
        next_at: u64,
    ) -> Result<(), ArchiveError> {
        self.store().write(move |txn| -> Result<(), ArchiveError> {
            let Some(v) = txn.get(&keys::notify(&id))? else {
                return Ok(());
            };
            let mut n: Notification = record::decode(&v)?;
            n.attempts += 1;
            n.next_at = next_at;
            n.last_error = Some(error);
            txn.put(keys::notify(&id), record::encode(&n)?);
            Ok(())
        })
    }
}
