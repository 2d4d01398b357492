// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The archive: the pipeline from an envelope and raw bytes to stored
//! records, and the lookups over them.
//!
//! [`Archive::ingest`] analyses the bytes (outside the store's writer, so
//! that sessions parse and hash in parallel) and then, in one write:
//! looks the raw digest up and, when the bytes are already stored, records a
//! sighting and returns the existing receipt id; otherwise it writes the
//! message record, the blob, the indexes, the thread links and a pending
//! entry for the stamper. It returns once all of that is on disk, which is
//! what lets a source acknowledge the message.
//!
//! Receipts, batches and evidence records are the stamper's part, in
//! [`evidence`].
//!
//! What is kept of a message is the policy's decision ([`crate::policy`]),
//! made here for every source alike: in archive mode its bytes are sealed
//! with the archive key ([`seal`]) when one is set, in hash-only mode no
//! byte of it is written, and the fields the rule withholds never reach the
//! record or the receipt. Retention, legal holds and the audit log are in
//! [`retention`]; receipt notifications wait in a queue ([`notify`]).

pub mod check;
pub mod evidence;
pub mod keys;
pub mod notify;
pub mod query;
pub mod record;
pub mod retention;
pub mod seal;
pub mod stamper;
pub mod thread;
pub mod verify;
pub mod view;

use std::path::Path;
use std::sync::{Arc, LazyLock, OnceLock};

use crate::analysis::{Analysis, Digests, Metadata, analyze};
use crate::envelope::{Envelope, Source};
use crate::id::ReceiptId;
use crate::policy::{Decision, Facts, Field, Policy};
use crate::store::{Store, StoreError, StoreOptions, Txn};

pub use record::{AppliedPolicy, MessageRecord, Mode, Sighting};
pub use thread::ThreadId;

/// Errors of archive operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store was written by a newer release.
    #[error(
        "the store has schema version {found}; this release reads version {supported}; \
         upgrade mailnotary"
    )]
    SchemaTooNew { found: u64, supported: u64 },
    /// The timestamp authority did not stamp a batch; its messages stay
    /// pending and are tried again.
    #[error("timestamp authority {0} failed: {1}")]
    Stamp(String, String),
    /// The archive key is missing or wrong, or a sealed blob does not open.
    #[error(transparent)]
    Seal(#[from] seal::SealError),
}

/// The schema version this release writes.
pub const SCHEMA_VERSION: u64 = 1;

/// What happened to ingested bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// New bytes: a message record and receipt id were created.
    Stored(ReceiptId),
    /// Bytes already stored under this receipt id; a sighting was added.
    Sighting(ReceiptId),
}

impl Ingested {
    pub fn receipt_id(&self) -> ReceiptId {
        match self {
            Ingested::Stored(id) | Ingested::Sighting(id) => *id,
        }
    }
}

/// The archive over an open store.
pub struct Archive {
    store: Store,
    /// Signs each new message's receipt before its write, when set.
    signer: OnceLock<evidence::ReceiptSigner>,
    /// The policy in force; the built-in default until one is set.
    policy: OnceLock<Arc<Policy>>,
    /// Seals archive-mode blobs, when set; without it they are stored
    /// as they are (library use and tests).
    key: OnceLock<seal::ArchiveKey>,
    /// Checks DKIM signatures of new messages, when set.
    dkim: OnceLock<Arc<crate::dkim::Verifier>>,
    /// The stamper's requests to timestamp authorities, counted.
    pub tsa_stats: evidence::TsaStats,
}

static BUILTIN_POLICY: LazyLock<Policy> = LazyLock::new(Policy::builtin);

impl Archive {
    /// Opens (creating when new) the archive in `data_dir`.
    pub fn open(data_dir: &Path, options: &StoreOptions) -> Result<Archive, ArchiveError> {
        let store = Store::open(data_dir, options)?;
        Archive::with_store(store)
    }

    /// Uses an already opened store, writing the schema version if new.
    pub fn with_store(store: Store) -> Result<Archive, ArchiveError> {
        let key = keys::key(keys::META, &[keys::META_SCHEMA]);
        match store.get(&key)?.as_deref().and_then(keys::read_u64) {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(ArchiveError::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
            None => store.write(move |txn| -> Result<(), StoreError> {
                txn.put(key, SCHEMA_VERSION.to_be_bytes().to_vec());
                Ok(())
            })?,
        }
        Ok(Archive {
            store,
            signer: OnceLock::new(),
            policy: OnceLock::new(),
            key: OnceLock::new(),
            dkim: OnceLock::new(),
            tsa_stats: evidence::TsaStats::default(),
        })
    }

    /// From now on, check the DKIM signatures of each new message with
    /// `verifier` before it is stored (unless its policy rule turns DKIM
    /// off), and keep the results and key records in its record and
    /// receipt. Set once; a second call is ignored.
    pub fn set_dkim_verifier(&self, verifier: Arc<crate::dkim::Verifier>) {
        let _ = self.dkim.set(verifier);
    }

    /// Puts `policy` in force for every message stored from now on. Set
    /// once; a second call is ignored.
    pub fn set_policy(&self, policy: Arc<Policy>) {
        let _ = self.policy.set(policy);
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.policy.get().map_or(&BUILTIN_POLICY, |p| p)
    }

    /// Seals archive-mode blobs with the key in `path` from now on,
    /// creating the key when the store has none yet. A missing or wrong key
    /// for a store that already holds sealed blobs is refused, and nothing
    /// is written.
    pub fn use_archive_key(&self, path: &Path) -> Result<(), ArchiveError> {
        let meta = keys::key(keys::META, &[keys::META_ARCHIVE_KEY]);
        let known: Option<[u8; 8]> = self
            .store
            .get(&meta)?
            .and_then(|v| v.as_slice().try_into().ok());
        let key = seal::ArchiveKey::open_or_create(path, known)?;
        if known.is_none() {
            let id = key.id().to_vec();
            self.store.write(move |txn| -> Result<(), StoreError> {
                txn.put(meta, id);
                Ok(())
            })?;
        }
        let _ = self.key.set(key);
        Ok(())
    }

    /// From now on, sign each new message's receipt as it is stored, in
    /// the same durable write, so that a stored message has its signed
    /// receipt at once and the stamper only completes it with evidence.
    /// Without a signer the stamper signs receipts when it takes messages
    /// into a batch. Set once; a second call is ignored.
    pub fn set_receipt_signer(&self, signer: evidence::ReceiptSigner) {
        let _ = self.signer.set(signer);
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Analyses and stores `raw`; returns once it is durable.
    pub fn ingest(&self, envelope: Envelope, raw: Vec<u8>) -> Result<Ingested, ArchiveError> {
        let analysis = analyze(&raw);
        self.ingest_analyzed(envelope, raw, analysis)
    }

    /// Stores bytes whose [`Analysis`] the caller already has.
    pub fn ingest_analyzed(
        &self,
        envelope: Envelope,
        raw: Vec<u8>,
        analysis: Analysis,
    ) -> Result<Ingested, ArchiveError> {
        self.ingest_with(envelope, raw, analysis, Vec::new())
    }

    /// Stores `raw` as [`Archive::ingest`] does, and puts `also` (a
    /// source's own bookkeeping, such as an IMAP checkpoint) in the same
    /// durable write, whether the bytes are new or a sighting.
    pub fn ingest_with(
        &self,
        envelope: Envelope,
        raw: Vec<u8>,
        analysis: Analysis,
        also: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Ingested, ArchiveError> {
        let Analysis {
            mut metadata,
            mut digests,
            anomalies,
            size,
        } = analysis;
        let Decision { rule, actions } = self
            .policy()
            .decide(&Facts::of(&envelope.source, &metadata));
        withhold(&mut metadata, &mut digests, &actions.withhold);
        let expires_at = actions
            .retention
            .as_ref()
            .map(|(_, r)| r.expires(envelope.received_at));
        // Identical bytes seen before are a sighting: nothing to check,
        // sign or keep.
        let known = self.store.get(&keys::by_raw(&digests.raw))?.is_some();
        // DKIM is checked on the bytes as received, before the record is
        // built, so that its results are signed with the rest.
        let dkim = match (self.dkim.get(), actions.dkim) {
            (Some(verifier), crate::policy::Dkim::Verify) if !known => {
                Some(verifier.check(&raw)).filter(|r| !r.is_empty())
            }
            _ => None,
        };
        let id = ReceiptId::generate(envelope.received_at);
        let record = MessageRecord {
            receipt_id: id.to_string(),
            envelope,
            metadata,
            digests,
            anomalies,
            size,
            mode: actions.mode,
            policy: AppliedPolicy {
                rule,
                retention: actions.retention.as_ref().map(|(text, _)| text.clone()),
                expires_at,
                withheld: actions.withhold.iter().map(|f| f.name().into()).collect(),
                statement: actions.statement.clone(),
                tsa: actions.tsa.clone(),
            },
            dkim,
        };
        // Signing runs here, on the caller's thread, so that the writer
        // thread only writes.
        let receipt = match self.signer.get() {
            Some(signer) if !known => Some(evidence::sign_receipt(&record, signer)?),
            _ => None,
        };
        // Encoding, copying and sealing happen here too, so that the
        // writer thread, which every session waits on, spends its time on
        // the store alone. Hash-only mode keeps no byte of the message.
        let encoded = record::encode(&record)?;
        let blob = match (record.mode, self.key.get()) {
            (Mode::HashOnly, _) => None,
            _ if known => None,
            (Mode::Archive, Some(key)) => Some(key.seal(&raw, &record.digests.raw.0)?),
            (Mode::Archive, None) => {
                let mut blob = Vec::with_capacity(raw.len() + 1);
                blob.push(keys::BLOB_PLAIN_V1);
                blob.extend_from_slice(&raw);
                Some(blob)
            }
        };
        drop(raw);
        let extras = Extras {
            legal_hold: actions.legal_hold,
            notify: actions.notify,
        };
        self.store.write(move |txn| {
            for (key, value) in also {
                txn.put(key, value);
            }
            write_message(
                txn,
                id,
                Prepared {
                    record,
                    encoded,
                    blob,
                    extras,
                },
                receipt,
            )
        })
    }

    /// The checkpoint of an IMAP folder: its UIDVALIDITY and the highest
    /// UID stored from it.
    pub fn imap_checkpoint(
        &self,
        account: &str,
        folder: &str,
    ) -> Result<Option<(u32, u32)>, ArchiveError> {
        Ok(self
            .store
            .get(&keys::imap_checkpoint(account, folder))?
            .as_deref()
            .and_then(keys::read_checkpoint))
    }

    /// Every IMAP checkpoint: account, folder, UIDVALIDITY, last UID.
    pub fn imap_checkpoints(&self) -> Result<Vec<serde_json::Value>, ArchiveError> {
        let mut out = Vec::new();
        self.store
            .scan_prefix(&[keys::IMAP_CHECKPOINT], &mut |key, value| {
                let rest = &key[1..];
                if let (Some(split), Some((validity, uid))) = (
                    rest.iter().position(|&b| b == 0),
                    keys::read_checkpoint(value),
                ) {
                    out.push(serde_json::json!({
                        "account": String::from_utf8_lossy(&rest[..split]),
                        "folder": String::from_utf8_lossy(&rest[split + 1..]),
                        "uid_validity": validity,
                        "last_uid": uid,
                    }));
                }
                true
            })?;
        Ok(out)
    }

    /// Records an IMAP folder's checkpoint on its own (a folder seen with
    /// a new UIDVALIDITY, before anything of it is stored).
    pub fn set_imap_checkpoint(
        &self,
        account: &str,
        folder: &str,
        uid_validity: u32,
        uid: u32,
    ) -> Result<(), ArchiveError> {
        let (key, value) = keys::checkpoint_entry(account, folder, uid_validity, uid);
        self.store.write(move |txn| -> Result<(), StoreError> {
            txn.put(key, value);
            Ok(())
        })?;
        Ok(())
    }

    /// The record of the message with receipt id `id`.
    pub fn message(&self, id: &ReceiptId) -> Result<Option<MessageRecord>, ArchiveError> {
        match self.store.get(&keys::message(id))? {
            Some(bytes) => Ok(Some(record::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The raw bytes kept for `id`, when the mode kept them and retention
    /// has not purged them.
    pub fn raw(&self, id: &ReceiptId) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(bytes) = self.store.get(&keys::blob(id))? else {
            return Ok(None);
        };
        match bytes.split_first() {
            Some((&keys::BLOB_PLAIN_V1, raw)) => Ok(Some(raw.to_vec())),
            Some((&seal::BLOB_SEALED_V1, sealed)) => {
                let key = self.key.get().ok_or(seal::SealError::NoKey)?;
                let record = self
                    .message(id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("blob of {id} has no record")))?;
                Ok(Some(key.open(sealed, &record.digests.raw.0)?))
            }
            _ => Err(StoreError::Corrupt(format!("blob of {id} has an unknown version")).into()),
        }
    }

    /// Every sighting of `id` after its first arrival, oldest first.
    pub fn sightings(&self, id: &ReceiptId) -> Result<Vec<Sighting>, ArchiveError> {
        self.decode_all(&keys::key(keys::SIGHTING, &[id.as_bytes()]))
    }

    /// Every record value under `prefix`, in key order; the first that does
    /// not decode stops the scan with its error.
    pub(crate) fn decode_all<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<T>, ArchiveError> {
        let mut out = Vec::new();
        let mut error = None;
        self.store.scan_prefix(prefix, &mut |_, v| {
            match record::decode(v) {
                Ok(s) => out.push(s),
                Err(e) => error = Some(e),
            }
            error.is_none()
        })?;
        match error {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    /// Whether `id` still waits for its timestamp.
    pub fn is_pending(&self, id: &ReceiptId) -> Result<bool, ArchiveError> {
        Ok(self.store.get(&keys::pending(id))?.is_some())
    }

    /// How many messages wait for their timestamp.
    pub fn pending_count(&self) -> Result<u64, ArchiveError> {
        let mut count = 0;
        self.store.scan_prefix(&[keys::PENDING], &mut |_, _| {
            count += 1;
            true
        })?;
        Ok(count)
    }

    /// The oldest message still waiting for its timestamp (receipt ids
    /// sort by time).
    pub fn oldest_pending(&self) -> Result<Option<ReceiptId>, ArchiveError> {
        let mut first = None;
        self.store.scan_prefix(&[keys::PENDING], &mut |k, _| {
            first = ReceiptId::from_slice(&k[1..]);
            false
        })?;
        Ok(first)
    }

    /// Closes the store after pending writes are committed.
    pub fn close(self) {
        self.store.close();
    }
}

/// A message ready for its write: the record, its encoding, and the blob.
struct Prepared {
    record: MessageRecord,
    encoded: Vec<u8>,
    /// None in hash-only mode, and for bytes already stored.
    blob: Option<Vec<u8>>,
    extras: Extras,
}

/// What the policy asks of the write besides the message itself.
struct Extras {
    legal_hold: bool,
    notify: Vec<String>,
}

/// Keeps the `fields` a rule withholds out of what is stored.
fn withhold(meta: &mut Metadata, digests: &mut Digests, fields: &[Field]) {
    for field in fields {
        match field {
            Field::Subject => meta.subject = None,
            Field::From => meta.from.clear(),
            Field::To => meta.to.clear(),
            Field::Cc => meta.cc.clear(),
            Field::Date => {
                meta.date = None;
                meta.date_unix = None;
            }
            Field::AttachmentNames => digests.parts.iter_mut().for_each(|p| p.filename = None),
        }
    }
}

fn write_message(
    txn: &mut Txn<'_>,
    id: ReceiptId,
    prepared: Prepared,
    mut receipt: Option<evidence::Receipt>,
) -> Result<Ingested, ArchiveError> {
    let Prepared {
        mut record,
        mut encoded,
        blob,
        extras,
    } = prepared;
    let digests = &record.digests;
    let raw_key = keys::by_raw(&digests.raw);
    if let Some(existing) = txn.get(&raw_key)? {
        let id = ReceiptId::from_slice(&existing).ok_or_else(|| {
            StoreError::Corrupt("raw digest index entry is not a receipt id".into())
        })?;
        let mut nonce = [0u8; 4];
        let _ = getrandom::getrandom(&mut nonce);
        let key = keys::sighting(&id, record.envelope.received_at, nonce);
        txn.put(
            key,
            record::encode(&Sighting {
                envelope: record.envelope,
            })?,
        );
        return Ok(Ingested::Sighting(id));
    }

    // A fresh id collides with a stored one only if the random source is
    // broken; take another rather than overwrite. A receipt signed for the
    // first id is dropped, and the stamper signs one for the new id.
    let mut id = id;
    while txn.contains(&keys::message(&id))? {
        id = ReceiptId::generate(record.envelope.received_at);
        record.receipt_id = id.to_string();
        encoded = record::encode(&record)?;
        receipt = None;
    }
    let digests = &record.digests;

    txn.put(raw_key, id.as_bytes().to_vec());
    txn.put(
        keys::by_digest(keys::BY_CANONICAL, &digests.canonical, &id),
        Vec::new(),
    );
    for part in &digests.parts {
        txn.put(
            keys::by_digest(keys::BY_PART, &part.sha256, &id),
            Vec::new(),
        );
    }

    let meta = &record.metadata;
    if let Some(mid) = &meta.message_id {
        txn.put(keys::by_message_id(mid, &id), Vec::new());
    }
    for mailbox in meta.from.iter().chain(&meta.to).chain(&meta.cc) {
        txn.put(keys::by_address(&mailbox.address, &id), Vec::new());
    }
    if let Source::Smtp {
        mail_from, rcpt_to, ..
    } = &record.envelope.source
    {
        for address in std::iter::once(mail_from).chain(rcpt_to) {
            if !address.is_empty() {
                txn.put(keys::by_address(address, &id), Vec::new());
            }
        }
    }

    let node = keys::node_for(meta.message_id.as_deref(), &id);
    let refs: Vec<&str> = meta
        .references
        .iter()
        .chain(&meta.in_reply_to)
        .map(String::as_str)
        .collect();
    let thread = thread::link(txn, &id, &node, &refs)?;

    let sort_time = record.sort_time();
    txn.put(keys::by_date(sort_time, &id), Vec::new());
    txn.put(keys::message(&id), encoded);
    if let Some(blob) = blob {
        txn.put(keys::blob(&id), blob);
        if let Some(expires_at) = record.policy.expires_at {
            txn.put(keys::retain(expires_at, &id), Vec::new());
        }
    }
    if let Some(receipt) = receipt {
        txn.put(keys::receipt_content(&id), receipt.content);
        txn.put(keys::receipt(&id), receipt.signed);
    }
    // The pending entry names the TSAs the rule chose (none: the
    // configured ones), so that the stamper batches messages by TSA.
    txn.put(keys::pending(&id), record::encode(&record.policy.tsa)?);
    if extras.legal_hold {
        retention::hold_in(
            txn,
            thread,
            true,
            &format!("policy rule {}", record.policy.rule),
            &format!("message {id} matched a rule with legal_hold"),
            record.envelope.received_at,
        )?;
    }
    if !extras.notify.is_empty() {
        notify::queue_in(txn, &id, extras.notify)?;
    }
    Ok(Ingested::Stored(id))
}
