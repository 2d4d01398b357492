// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Threads: which messages belong together.
//!
//! A thread is built from Message-ID, In-Reply-To and References only. Two
//! messages are in the same thread when a chain of those headers links
//! them, whatever order they arrive in: a reply that comes before its
//! parent names the parent's Message-ID, so the parent joins the reply's
//! thread when it arrives, and two threads that a later message links are
//! merged. Subjects are never compared: a stranger's "Re: same subject" must
//! not land in someone else's dispute.
//!
//! Every Message-ID that is named anywhere in a thread is a node of it, so
//! any of them finds the whole thread, and the named ones that are not in
//! the archive are its gaps.
//!
//! Two differences from Dovecot's `THREAD REFS` (RFC 5256 with the REFS
//! variant) are deliberate; `tests/threading.rs` checks both against a real
//! Dovecot. Dovecot drops a reference that would close a loop and then puts
//! the messages of the loop in different threads; here every link counts,
//! because a message that names another one is evidence that its sender
//! saw it. And Dovecot keeps two messages with the same Message-ID in
//! separate threads when nothing else links them; here they share a thread,
//! because a second copy of one Message-ID (for example the other party's
//! copy of the same mail) is about the same conversation.
//!
//! Thread numbers come from a counter. When threads merge, the lower number
//! survives and the other is recorded as an alias of it, so that a number
//! shown to someone earlier still finds the thread.

use std::collections::BTreeSet;

use super::keys;
use crate::id::ReceiptId;
use crate::store::{StoreError, Txn};

/// The number of a thread, shown as `thread-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u64);

impl std::fmt::Display for ThreadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "thread-{}", self.0)
    }
}

impl ThreadId {
    /// Parses `thread-N`.
    pub fn parse(text: &str) -> Option<ThreadId> {
        text.strip_prefix("thread-")?.parse().ok().map(ThreadId)
    }
}

/// Adds the message `id` with thread node `node` and the nodes it refers to
/// to the thread they share, creating or merging threads as needed.
pub(super) fn link(
    txn: &mut Txn<'_>,
    id: &ReceiptId,
    node: &[u8],
    refs: &[&str],
) -> Result<ThreadId, StoreError> {
    let mut nodes: Vec<&[u8]> = vec![node];
    for r in refs {
        if r.as_bytes() != node && !nodes.contains(&r.as_bytes()) {
            nodes.push(r.as_bytes());
        }
    }

    let mut found = BTreeSet::new();
    for n in &nodes {
        if let Some(t) = txn.get(&keys::node_thread(n))? {
            found.insert(decode_thread(&t)?);
        }
    }

    let thread = match found.pop_first() {
        Some(first) => first,
        None => allocate(txn)?,
    };
    for other in found {
        merge(txn, other, thread)?;
    }

    let number = thread.0.to_be_bytes().to_vec();
    for n in nodes {
        let key = keys::node_thread(n);
        if txn.get(&key)?.as_deref() != Some(number.as_slice()) {
            txn.put(key, number.clone());
            txn.put(keys::thread_node(thread.0, n), Vec::new());
        }
    }
    txn.put(keys::thread_message(thread.0, id), Vec::new());
    Ok(thread)
}

fn decode_thread(bytes: &[u8]) -> Result<ThreadId, StoreError> {
    keys::read_u64(bytes)
        .map(ThreadId)
        .ok_or_else(|| StoreError::Corrupt("thread number is not 8 bytes".into()))
}

fn allocate(txn: &mut Txn<'_>) -> Result<ThreadId, StoreError> {
    let key = keys::key(keys::META, &[keys::META_THREAD_SEQ]);
    let next = match txn.get(&key)? {
        Some(bytes) => keys::read_u64(&bytes)
            .ok_or_else(|| StoreError::Corrupt("thread counter is not 8 bytes".into()))?,
        None => 1,
    };
    txn.put(key, (next + 1).to_be_bytes().to_vec());
    Ok(ThreadId(next))
}

/// Moves every node and message of thread `from` into thread `into`.
fn merge(txn: &mut Txn<'_>, from: ThreadId, into: ThreadId) -> Result<(), StoreError> {
    let number = into.0.to_be_bytes().to_vec();
    let node_prefix = keys::key(keys::THREAD_NODE, &[&from.0.to_be_bytes()]);
    for (key, _) in txn.scan_prefix(&node_prefix)? {
        let node = key[node_prefix.len()..].to_vec();
        txn.delete(key);
        txn.put(keys::node_thread(&node), number.clone());
        txn.put(keys::thread_node(into.0, &node), Vec::new());
    }
    let message_prefix = keys::key(keys::THREAD_MESSAGE, &[&from.0.to_be_bytes()]);
    for (key, _) in txn.scan_prefix(&message_prefix)? {
        if let Some(id) = keys::trailing_receipt_id(&key) {
            txn.put(keys::thread_message(into.0, &id), Vec::new());
        }
        txn.delete(key);
    }
    // A legal hold on either thread holds the merged one: a hold is never
    // lost by a later message that links two threads.
    if let Some(hold) = txn.get(&keys::hold(from.0))? {
        txn.delete(keys::hold(from.0));
        if !txn.contains(&keys::hold(into.0))? {
            txn.put(keys::hold(into.0), hold);
        }
    }
    txn.put(keys::thread_alias(from.0), number);
    Ok(())
}
