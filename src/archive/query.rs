// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Lookups: by thread, Message-ID, address, subject and date range.
//!
//! Thread, Message-ID and address lookups read their indexes. A subject
//! lookup has no index: it reads the message records in date order (within
//! `--since`/`--until` when given) and keeps those whose subject contains
//! the text, ignoring case. That is fine for interactive use on archives of
//! some hundred thousand messages; narrow it with a date range on larger
//! ones.
//!
//! Date filters compare with the message's Date header, or with the
//! gateway's receipt time when the message has no valid Date.

use super::{Archive, ArchiveError, MessageRecord, ThreadId, keys, record};
use crate::id::ReceiptId;
use crate::store::StoreError;

/// What to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The whole thread of a Message-ID, thread number or receipt id.
    Thread(String),
    /// Messages with this Message-ID (angle brackets optional).
    MessageId(String),
    /// Messages from, to or copied to this address (any case).
    Address(String),
    /// Messages whose subject contains this text (any case).
    Subject(String),
    /// Every message.
    All,
}

/// A lookup: a selector and an optional date range (Unix seconds,
/// inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub selector: Selector,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A thread with its messages and its gaps.
#[derive(Debug, Clone)]
pub struct ThreadView {
    pub id: ThreadId,
    /// Messages in date order.
    pub messages: Vec<MessageRecord>,
    /// Message-IDs named by the thread's messages but not in the archive.
    pub gaps: Vec<String>,
}

/// Removes surrounding white space and angle brackets from a Message-ID.
pub fn normalize_message_id(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(text)
}

impl Query {
    /// Whether `record` falls within the query's date range.
    pub fn in_range(&self, record: &MessageRecord) -> bool {
        let t = record.sort_time();
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

impl Archive {
    /// Runs a lookup; messages come back in date order.
    pub fn find(&self, query: &Query) -> Result<Vec<MessageRecord>, ArchiveError> {
        let mut records = match &query.selector {
            Selector::Thread(text) => match self.resolve_thread(text)? {
                Some(thread) => self.thread_records(thread)?,
                None => Vec::new(),
            },
            Selector::MessageId(text) => {
                let prefix = keys::by_message_id_prefix(normalize_message_id(text));
                self.records_from_index(&prefix)?
            }
            Selector::Address(address) => {
                let prefix = keys::by_address_prefix(address.trim());
                self.records_from_index(&prefix)?
            }
            Selector::Subject(text) => {
                let needle = text.to_lowercase();
                self.records_by_date(query.since, query.until, &mut |r| {
                    r.metadata
                        .subject
                        .as_deref()
                        .is_some_and(|s| s.to_lowercase().contains(&needle))
                })?
            }
            Selector::All => self.records_by_date(query.since, query.until, &mut |_| true)?,
        };
        records.retain(|r| query.in_range(r));
        records.sort_by(|a, b| (a.sort_time(), &a.receipt_id).cmp(&(b.sort_time(), &b.receipt_id)));
        Ok(records)
    }

    /// Finds the thread that `text` names: a Message-ID of any message in
    /// it or named by it, a thread number (`thread-N`), or a receipt id.
    pub fn resolve_thread(&self, text: &str) -> Result<Option<ThreadId>, ArchiveError> {
        let mid = normalize_message_id(text);
        if !mid.is_empty()
            && let Some(t) = self.store().get(&keys::node_thread(mid.as_bytes()))?
        {
            return Ok(Some(self.resolve_alias(read_thread(&t)?)?));
        }
        if let Some(thread) = ThreadId::parse(text.trim()) {
            // As in [`Archive::thread`]: a merge between the alias and the
            // scan empties the old number, so look at the alias again.
            let mut thread = self.resolve_alias(thread)?;
            for _ in 0..64 {
                let prefix = keys::key(keys::THREAD_MESSAGE, &[&thread.0.to_be_bytes()]);
                let mut exists = false;
                self.store().scan_prefix(&prefix, &mut |_, _| {
                    exists = true;
                    false
                })?;
                let now = self.resolve_alias(thread)?;
                if now == thread {
                    return Ok(exists.then_some(thread));
                }
                thread = now;
            }
            return Err(StoreError::Corrupt(format!("thread {thread} keeps being merged")).into());
        }
        if let Ok(id) = text.trim().parse::<ReceiptId>()
            && let Some(record) = self.message(&id)?
        {
            return self.thread_of(&record).map(Some);
        }
        Ok(None)
    }

    /// The thread a stored message belongs to.
    pub fn thread_of(&self, record: &MessageRecord) -> Result<ThreadId, ArchiveError> {
        let id = record.id()?;
        let node = keys::node_for(record.metadata.message_id.as_deref(), &id);
        match self.store().get(&keys::node_thread(&node))? {
            Some(t) => self.resolve_alias(read_thread(&t)?),
            None => Err(StoreError::Corrupt(format!("message {id} has no thread entry")).into()),
        }
    }

    /// The whole thread with its gaps.
    ///
    /// A thread is read in several steps while messages may be arriving. A
    /// message that links two threads merges the later into the earlier in
    /// one commit (its entries move, and an alias is left behind); a read
    /// that met the old thread number before the merge and scanned it after
    /// would find it empty. So the alias is looked at again at the end, and
    /// the read starts over on the merged thread when one appeared.
    pub fn thread(&self, thread: ThreadId) -> Result<ThreadView, ArchiveError> {
        let mut thread = self.resolve_alias(thread)?;
        // Each merge lowers the number; the bound guards a corrupt store.
        for _ in 0..64 {
            let view = self.thread_once(thread)?;
            let now = self.resolve_alias(thread)?;
            if now == thread {
                return Ok(view);
            }
            thread = now;
        }
        Err(StoreError::Corrupt(format!("thread {thread} keeps being merged")).into())
    }

    fn thread_once(&self, thread: ThreadId) -> Result<ThreadView, ArchiveError> {
        let mut messages = self.thread_records(thread)?;
        messages
            .sort_by(|a, b| (a.sort_time(), &a.receipt_id).cmp(&(b.sort_time(), &b.receipt_id)));

        let prefix = keys::key(keys::THREAD_NODE, &[&thread.0.to_be_bytes()]);
        let mut nodes = Vec::new();
        self.store().scan_prefix(&prefix, &mut |k, _| {
            nodes.push(k[prefix.len()..].to_vec());
            true
        })?;
        let mut gaps = Vec::new();
        for node in nodes {
            // Nodes that start with 0x00 stand for messages without a
            // Message-ID; they are always present.
            if node.first() == Some(&0) {
                continue;
            }
            let Ok(mid) = String::from_utf8(node) else {
                continue;
            };
            let mut present = false;
            self.store()
                .scan_prefix(&keys::by_message_id_prefix(&mid), &mut |_, _| {
                    present = true;
                    false
                })?;
            if !present {
                gaps.push(mid);
            }
        }
        Ok(ThreadView {
            id: thread,
            messages,
            gaps,
        })
    }

    fn resolve_alias(&self, mut thread: ThreadId) -> Result<ThreadId, ArchiveError> {
        // Each merge lowers the number, so the chain ends; the bound only
        // guards against a corrupt store.
        for _ in 0..64 {
            match self.store().get(&keys::thread_alias(thread.0))? {
                Some(next) => thread = read_thread(&next)?,
                None => return Ok(thread),
            }
        }
        Err(StoreError::Corrupt(format!("alias chain of {thread} does not end")).into())
    }

    fn thread_records(&self, thread: ThreadId) -> Result<Vec<MessageRecord>, ArchiveError> {
        let prefix = keys::key(keys::THREAD_MESSAGE, &[&thread.0.to_be_bytes()]);
        self.records_from_index(&prefix)
    }

    /// Loads the records whose receipt ids end the keys under `prefix`.
    fn records_from_index(&self, prefix: &[u8]) -> Result<Vec<MessageRecord>, ArchiveError> {
        let mut ids = Vec::new();
        self.store().scan_prefix(prefix, &mut |k, _| {
            if let Some(id) = keys::trailing_receipt_id(k) {
                ids.push(id);
            }
            true
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.message(&id)? {
                Some(r) => out.push(r),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "an index names message {id}, which is not stored"
                    ))
                    .into());
                }
            }
        }
        Ok(out)
    }

    /// Records in date order within the range, filtered by `keep`.
    fn records_by_date(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        keep: &mut dyn FnMut(&MessageRecord) -> bool,
    ) -> Result<Vec<MessageRecord>, ArchiveError> {
        let start = keys::key(
            keys::BY_DATE,
            &[&keys::ordered_i64(since.unwrap_or(i64::MIN))],
        );
        let end = match until {
            Some(u) if u < i64::MAX => keys::key(keys::BY_DATE, &[&keys::ordered_i64(u + 1)]),
            _ => vec![keys::BY_DATE + 1],
        };
        let mut ids = Vec::new();
        self.store().scan(&start, &end, &mut |k, _| {
            if let Some(id) = keys::trailing_receipt_id(k) {
                ids.push(id);
            }
            true
        })?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(bytes) = self.store().get(&keys::message(&id))? {
                let r: MessageRecord = record::decode(&bytes)?;
                if keep(&r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
}

fn read_thread(bytes: &[u8]) -> Result<ThreadId, StoreError> {
    keys::read_u64(bytes)
        .map(ThreadId)
        .ok_or_else(|| StoreError::Corrupt("thread number is not 8 bytes".into()))
}

/// Reads a time given as RFC 3339 or as a date (`2026-03-01`: its first
/// second, or with `end_of_day` its last); Unix seconds.
pub fn parse_time(text: &str, end_of_day: bool) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let time = if end_of_day {
            d.and_hms_opt(23, 59, 59)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        if let Some(t) = time {
            return Ok(t.and_utc().timestamp());
        }
    }
    Err(format!(
        "cannot read {text:?} as a time: use 2026-03-01 or 2026-03-01T09:30:00+08:00"
    ))
}

impl Archive {
    /// The messages `query` selects, in date order; for a thread, also the
    /// thread with its gaps (read once for both).
    pub fn lookup(
        &self,
        query: &Query,
    ) -> Result<(Vec<MessageRecord>, Option<ThreadView>), ArchiveError> {
        match &query.selector {
            Selector::Thread(text) => match self.resolve_thread(text)? {
                Some(t) => {
                    let mut view = self.thread(t)?;
                    view.messages.retain(|r| query.in_range(r));
                    Ok((std::mem::take(&mut view.messages), Some(view)))
                }
                None => Ok((Vec::new(), None)),
            },
            _ => Ok((self.find(query)?, None)),
        }
    }
}
