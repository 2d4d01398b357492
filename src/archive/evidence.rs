// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The stamper's work on the archive: receipts, batches and evidence.
//!
//! [`Archive::stamp_pending`] takes the messages waiting in the pending
//! table, signs a receipt for each one that has none yet, puts the SHA-256
//! of every receipt content under one RFC 4998 hash tree, has its root
//! timestamped once, and writes one evidence record per message, all in
//! one durable write that also removes the pending entries. One timestamp
//! request per batch, never per message.
//!
//! Batches form a chain: the first leaf of every batch after the first is
//! the root of the batch before it, so a batch removed from or reordered in
//! the archive breaks the chain, which `check` detects.
//!
//! Receipts are signed as messages are stored, in the same durable write,
//! when the archive has a receipt signer ([`Archive::set_receipt_signer`],
//! which `ingest` sets): the signature is made on the storing thread, not
//! the writer's, and a stored message has its signed receipt at once. The
//! stamper signs any receipt still missing (a message stored without a
//! signer) when it takes the message into a batch.
//!
//! If the timestamp authority fails, only receipts signed for the batch are
//! written: the messages stay pending and the next call tries again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Archive, ArchiveError, MessageRecord, keys, record};
use crate::hashtree::{Hash, HashTree};
use crate::id::ReceiptId;
use crate::receipt::content::{Issuer, ReceiptContent};
use crate::store::StoreError;
use crate::tsa::pki::KeyPair;

/// Something that timestamps a digest: the built-in TSA, an external one
/// over HTTP, or a set of them.
pub trait Stamper {
    /// A short name for logs and batch records, such as "built-in".
    fn name(&self) -> String;
    /// Returns a DER TimeStampToken over `digest` (SHA-256).
    fn stamp(&self, digest: &Hash) -> Result<Vec<u8>, String>;
    /// Every token to keep for `digest`, each with the name of the TSA that
    /// made it; the first goes into the evidence records. One token unless
    /// several TSAs stamp every batch.
    fn stamp_all(&self, digest: &Hash) -> Result<Vec<(String, Vec<u8>)>, String> {
        Ok(vec![(self.name(), self.stamp(digest)?)])
    }
    /// The stamper for messages whose policy rule chose the TSAs `tsas`,
    /// when it is another one than this; `None` stamps them here.
    fn for_tsas(&self, _tsas: &[String]) -> Option<&dyn Stamper> {
        None
    }
}

impl Stamper for crate::tsa::Tsa {
    fn name(&self) -> String {
        "built-in".into()
    }

    fn stamp(&self, digest: &Hash) -> Result<Vec<u8>, String> {
        crate::tsa::Tsa::stamp(self, digest, None).map_err(|e| e.to_string())
    }
}

/// What is recorded of one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub number: u64,
    /// The root that was timestamped, hex.
    pub root: String,
    /// The previous batch's root, the first leaf of this tree; `None` for
    /// the first batch.
    pub previous_root: Option<String>,
    /// How many messages the batch holds.
    pub messages: u64,
    /// The TSA whose token the evidence records carry.
    pub tsa: String,
    /// Further TSAs that stamped the same root (stamping mode `all`); their
    /// tokens are kept beside the batch's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_stamped_by: Vec<String>,
    /// Gateway clock when the token came back, milliseconds since the epoch.
    pub stamped_at: u64,
}

/// What one call of [`Archive::stamp_pending`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub batch: Batch,
}

/// The evidence stored for one message.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub batch: Batch,
    /// The DER RFC 4998 evidence record.
    pub record: Vec<u8>,
}

/// A message's receipt as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// CMS SignedData, DER.
    pub signed: Vec<u8>,
    /// The receipt content, DER: the eContent of `signed`.
    pub content: Vec<u8>,
}

/// Signs receipts: who the gateway is and its receipt key.
#[derive(Clone)]
pub struct ReceiptSigner {
    pub issuer: Issuer,
    pub key: KeyPair,
}

impl Archive {
    /// Stamps up to `max` pending messages as one batch; `Ok(None)` when
    /// nothing is pending.
    pub fn stamp_pending(
        &self,
        signer: &ReceiptSigner,
        stamper: &dyn Stamper,
        max: usize,
    ) -> Result<Option<BatchSummary>, ArchiveError> {
        // A batch holds messages of one TSA choice: the first pending
        // message's, and every other pending message with the same one.
        let mut ids = Vec::new();
        let mut group: Option<Vec<String>> = None;
        self.store().scan_prefix(&[keys::PENDING], &mut |k, v| {
            let tsas = pending_tsas(v);
            let Some(id) = ReceiptId::from_slice(&k[1..]) else {
                return true;
            };
            match &group {
                None => {
                    group = Some(tsas);
                    ids.push(id);
                }
                Some(g) if *g == tsas => ids.push(id),
                Some(_) => {}
            }
            ids.len() < max
        })?;
        let Some(group) = group else {
            return Ok(None);
        };
        let stamper = match group.is_empty() {
            true => stamper,
            false => stamper.for_tsas(&group).unwrap_or(stamper),
        };

        // Each message's receipt: the stored one, or one built and signed
        // now. Reading, building and signing run on all cores; ECDSA
        // dominates when many receipts are missing.
        // The content of each message's receipt, and the signature of
        // those signed now.
        let receipts: Vec<(Vec<u8>, Option<Vec<u8>>)> = parallel_map(&ids, |id| {
            if let Some(content) = self.store().get(&keys::receipt_content(id))? {
                return Ok((content, None));
            }
            let record = self.message(id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("pending message {id} has no record"))
            })?;
            let Receipt { signed, content } = sign_receipt(&record, signer)?;
            Ok((content, Some(signed)))
        })?;
        let leaves: Vec<Hash> = receipts
            .iter()
            .map(|(content, _)| Sha256::digest(content).into())
            .collect();
        let new_receipts: Vec<(ReceiptId, Vec<u8>, Vec<u8>)> = ids
            .iter()
            .zip(receipts)
            .filter_map(|(id, (content, signed))| Some((*id, content, signed?)))
            .collect();

        let last = self.last_batch()?;
        let previous_root = last.as_ref().map(|b| hash_from_hex(&b.root)).transpose()?;
        let mut tree_leaves: Vec<Hash> = leaves.clone();
        if let Some(root) = previous_root {
            tree_leaves.push(root);
        }
        let tree = HashTree::build(&tree_leaves)
            .ok_or_else(|| StoreError::Bug("a batch without leaves".into()))?;
        let root = tree.root();
        let asked = std::time::Instant::now();
        let answer = stamper.stamp_all(&root);
        self.tsa_stats.record(asked.elapsed(), answer.is_ok());
        let mut tokens = match answer {
            Ok(tokens) if !tokens.is_empty() => tokens,
            Ok(_) => return Err(ArchiveError::Stamp(stamper.name(), "no token".into())),
            Err(e) => {
                // The receipts signed for this batch are kept, so that the
                // messages show as signed and pending and the next attempt
                // does not sign them again.
                self.store().write(move |txn| -> Result<(), ArchiveError> {
                    for (id, content, signed) in new_receipts {
                        txn.put(keys::receipt_content(&id), content);
                        txn.put(keys::receipt(&id), signed);
                    }
                    Ok(())
                })?;
                return Err(ArchiveError::Stamp(stamper.name(), e));
            }
        };
        let (first_tsa, token) = tokens.remove(0);
        let extra_tokens = tokens;

        let batch = Batch {
            number: last.as_ref().map_or(1, |b| b.number + 1),
            root: hex::encode(root),
            previous_root: previous_root.map(hex::encode),
            messages: ids.len() as u64,
            tsa: first_tsa,
            also_stamped_by: extra_tokens.iter().map(|(name, _)| name.clone()).collect(),
            stamped_at: crate::envelope::now_millis(),
        };
        let pairs: Vec<(&ReceiptId, &Hash)> = ids.iter().zip(&leaves).collect();
        let evidence: Vec<(ReceiptId, Vec<u8>)> = parallel_map(&pairs, |(id, leaf)| {
            let reduced = tree
                .reduced(leaf)
                .ok_or_else(|| StoreError::Bug("a leaf is missing from its tree".into()))?;
            let ers =
                crate::ers::build(&reduced, &token).map_err(|e| StoreError::Bug(e.to_string()))?;
            let mut value = batch.number.to_be_bytes().to_vec();
            value.extend_from_slice(&ers);
            Ok((**id, value))
        })?;

        let written = batch.clone();
        self.store().write(move |txn| -> Result<(), ArchiveError> {
            // Another stamper run must not have taken this batch number.
            if txn.contains(&keys::batch(written.number))? {
                return Err(StoreError::Bug(format!(
                    "batch {} already exists; two stampers ran at once",
                    written.number
                ))
                .into());
            }
            for (id, content, signed) in new_receipts {
                txn.put(keys::receipt_content(&id), content);
                txn.put(keys::receipt(&id), signed);
            }
            for (id, value) in evidence {
                txn.put(keys::evidence(&id), value);
                txn.delete(keys::pending(&id));
            }
            txn.put(keys::batch_token(written.number), token);
            for (i, (_, extra)) in extra_tokens.into_iter().enumerate() {
                txn.put(keys::batch_extra_token(written.number, i as u8 + 1), extra);
            }
            txn.put(keys::batch(written.number), record::encode(&written)?);
            txn.put(
                keys::key(keys::META, &[keys::META_LAST_BATCH]),
                written.number.to_be_bytes().to_vec(),
            );
            Ok(())
        })?;
        tracing::info!(
            batch = batch.number,
            messages = batch.messages,
            "batch stamped"
        );
        Ok(Some(BatchSummary { batch }))
    }

    /// The last batch stamped, if any.
    pub fn last_batch(&self) -> Result<Option<Batch>, ArchiveError> {
        let key = keys::key(keys::META, &[keys::META_LAST_BATCH]);
        match self.store().get(&key)?.as_deref().and_then(keys::read_u64) {
            Some(number) => self.batch(number),
            None => Ok(None),
        }
    }

    /// Batch number `number`.
    pub fn batch(&self, number: u64) -> Result<Option<Batch>, ArchiveError> {
        match self.store().get(&keys::batch(number))? {
            Some(bytes) => Ok(Some(record::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The further tokens over batch `number`'s root, in the order of
    /// [`Batch::also_stamped_by`].
    pub fn batch_extra_tokens(&self, number: u64) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let mut tokens = Vec::new();
        let exact = keys::batch_token(number);
        self.store().scan_prefix(&exact, &mut |k, v| {
            if k.len() > exact.len() {
                tokens.push(v.to_vec());
            }
            true
        })?;
        Ok(tokens)
    }

    /// The token over batch `number`'s root.
    pub fn batch_token(&self, number: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        Ok(self.store().get(&keys::batch_token(number))?)
    }

    /// The evidence of message `id`, once stamped.
    pub fn evidence(&self, id: &ReceiptId) -> Result<Option<Evidence>, ArchiveError> {
        let Some(value) = self.store().get(&keys::evidence(id))? else {
            return Ok(None);
        };
        let number = keys::read_u64(&value)
            .ok_or_else(|| StoreError::Corrupt(format!("evidence of {id} is too short")))?;
        let batch = self.batch(number)?.ok_or_else(|| {
            StoreError::Corrupt(format!("evidence of {id} names missing batch {number}"))
        })?;
        Ok(Some(Evidence {
            batch,
            record: value[8..].to_vec(),
        }))
    }

    /// The signed receipt of `id` and its content, once signed.
    pub fn receipt(&self, id: &ReceiptId) -> Result<Option<Receipt>, ArchiveError> {
        let signed = self.store().get(&keys::receipt(id))?;
        let content = self.store().get(&keys::receipt_content(id))?;
        Ok(signed
            .zip(content)
            .map(|(signed, content)| Receipt { signed, content }))
    }
}

/// `f` over `items` on as many threads as there are cores, in order; the
/// first error wins.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, ArchiveError> + Sync,
) -> Result<Vec<R>, ArchiveError> {
    // Asking the system reads cgroup files each time: once is enough.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let threads = cores.min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    let parts: Vec<Result<Vec<R>, ArchiveError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Bug("a stamping thread panicked".into()).into())
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// The signed receipt of `record`: its content and the CMS around it.
pub(crate) fn sign_receipt(
    record: &MessageRecord,
    signer: &ReceiptSigner,
) -> Result<Receipt, ArchiveError> {
    let content = receipt_content(record, &signer.issuer)?;
    let signed = crate::receipt::sign(&content, &signer.key)
        .map_err(|e| StoreError::Bug(format!("receipt signature: {e}")))?;
    Ok(Receipt { signed, content })
}

fn receipt_content(record: &MessageRecord, issuer: &Issuer) -> Result<Vec<u8>, ArchiveError> {
    ReceiptContent::for_record(record, issuer)
        .to_der()
        .map_err(|e| StoreError::Bug(format!("receipt content: {e}")).into())
}

/// The TSAs a pending entry names: none (the configured ones) for entries
/// written before policies chose TSAs, whose value is empty.
fn pending_tsas(value: &[u8]) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    record::decode(value).unwrap_or_default()
}

fn hash_from_hex(text: &str) -> Result<Hash, StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| StoreError::Corrupt(format!("batch root {text:?} is not 64 hex digits")))?;
    Ok(out)
}

/// What the stamper's requests to timestamp authorities did since the
/// archive was opened, for `/metrics`.
#[derive(Debug, Default)]
pub struct TsaStats {
    pub requests: std::sync::atomic::AtomicU64,
    pub failures: std::sync::atomic::AtomicU64,
    /// The time all requests took together, in microseconds.
    pub total_micros: std::sync::atomic::AtomicU64,
    /// The last request's time, in microseconds.
    pub last_micros: std::sync::atomic::AtomicU64,
}

impl TsaStats {
    fn record(&self, took: std::time::Duration, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Relaxed);
        if !ok {
            self.failures.fetch_add(1, Relaxed);
        }
        self.total_micros.fetch_add(micros, Relaxed);
        self.last_micros.store(micros, Relaxed);
    }
}
