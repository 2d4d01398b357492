// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The store: one ordered key-value space, two embedded backends, one writer.
//!
//! Everything mailnotary keeps goes through this module. Callers see keys
//! and values as byte strings; the layout of each table (its one-byte
//! prefix, big-endian keys, versioned values) is owned by
//! [`crate::archive::keys`] and documented in `docs/formats.md`.
//!
//! A [`Backend`] has three operations: get, ordered scan, and an atomic batch
//! commit of puts and deletes that is on disk before it returns. That small surface is what
//! both embedded engines implement here ([`redb_backend`], the default, and
//! [`sled_backend`]), and what a distributed engine could implement later.
//!
//! All writes go through one writer thread ([`Store::write`]). A write is a
//! closure that reads and writes through a [`Txn`]; the writer runs every
//! closure waiting in its queue, one after the other, each seeing the
//! writes of those before it, and then commits them all with one durable
//! commit. Callers return only after that commit, so an acknowledgement
//! always means "on disk", while concurrent sessions share one fsync. A
//! closure that fails has its writes dropped; the others still commit.
//!
//! Reads outside a write ([`Store::get`], [`Store::scan`]) see the last
//! committed state.

pub mod redb_backend;
pub mod sled_backend;
pub mod wal;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

/// How many queued writes at most go into one commit. Bounds the latency
/// the first writer of a group waits for the last.
const MAX_GROUP: usize = 256;

/// An error of the store or of a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the store open.
    #[error(
        "the store at {path} is open in another process; stop that process (for example a \
         running `mailnotary serve`) or use another --data directory"
    )]
    Locked { path: PathBuf },
    /// The data directory holds a store of the other backend.
    #[error(
        "the data directory {path} holds a {found} store, not {wanted}; pass --store {found} \
         or choose another --data directory"
    )]
    WrongBackend {
        path: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
    /// Reading or writing the backend's files failed.
    #[error("{backend} store: {detail}")]
    Backend {
        backend: &'static str,
        detail: String,
    },
    /// A stored value could not be decoded.
    #[error("corrupt or unknown value in the store: {0}")]
    Corrupt(String),
    /// The writer thread has stopped; the store must be reopened.
    #[error("the store's writer has stopped after an earlier error; restart mailnotary")]
    WriterGone,
    /// An internal invariant failed. This is a bug: please report it.
    #[error("internal error in the store (please report this bug): {0}")]
    Bug(String),
}

/// One change of a batch: a put when the value is `Some`, a delete if not.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// An ordered, durable key-value engine.
pub trait Backend: Send + Sync + 'static {
    /// The engine's name, as given to `--store`.
    fn name(&self) -> &'static str;

    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Calls `visit` for each pair with `start <= key < end` in key order
    /// until it returns false. An empty `end` means "to the last key".
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Applies all changes atomically; returns once they are durable.
    fn commit(&self, changes: &[Change]) -> Result<(), StoreError>;

    /// Finishes what is in flight before the store is dropped.
    fn close(&self) {}
}

/// Which embedded engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// redb: one file, fsync per commit, repairs itself on open after a crash.
    #[default]
    Redb,
    /// sled 0.34: see [`sled_backend`] for what it guarantees.
    Sled,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Redb => "redb",
            BackendKind::Sled => "sled",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "redb" => Ok(BackendKind::Redb),
            "sled" => Ok(BackendKind::Sled),
            other => Err(format!("unknown store {other:?}; expected redb or sled")),
        }
    }
}

/// The engine of the store already in `dir`, if there is one.
pub fn detect_backend(dir: &Path) -> Option<BackendKind> {
    if dir.join(redb_backend::FILE_NAME).exists() {
        Some(BackendKind::Redb)
    } else if dir.join(sled_backend::DIR_NAME).exists() {
        Some(BackendKind::Sled)
    } else {
        None
    }
}

/// Options for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub backend: BackendKind,
    /// Page cache of the engine in bytes.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            backend: BackendKind::Redb,
            cache_bytes: 64 * 1024 * 1024,
        }
    }
}

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&mut Txn<'_>) -> Reply + Send>;

/// The opened store: the backend plus its writer thread.
pub struct Store {
    backend: Arc<dyn Backend>,
    /// Queue of the writer thread; `None` once closed.
    jobs_tx: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with the chosen backend.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend {
            backend: options.backend.name(),
            detail: format!("cannot create {}: {e}", dir.display()),
        })?;
        let redb_path = dir.join(redb_backend::FILE_NAME);
        let sled_path = dir.join(sled_backend::DIR_NAME);
        let (found, wanted) = match options.backend {
            BackendKind::Redb => (sled_path.exists() && !redb_path.exists(), "redb"),
            BackendKind::Sled => (redb_path.exists() && !sled_path.exists(), "sled"),
        };
        if found {
            return Err(StoreError::WrongBackend {
                path: dir.to_path_buf(),
                found: if wanted == "redb" { "sled" } else { "redb" },
                wanted,
            });
        }
        let engine: Arc<dyn Backend> = match options.backend {
            BackendKind::Redb => Arc::new(redb_backend::RedbBackend::open(
                &redb_path,
                options.cache_bytes,
            )?),
            BackendKind::Sled => Arc::new(sled_backend::SledBackend::open(
                &sled_path,
                options.cache_bytes,
            )?),
        };
        // The engine is open (and so locked against other processes)
        // before its log is replayed.
        let logged = wal::WalBackend::open(engine, &dir.join(wal::DIR_NAME))?;
        Ok(Store::with_backend(Arc::new(logged)))
    }

    /// Wraps an already opened backend and starts its writer thread.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Store {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let writer_backend = Arc::clone(&backend);
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer_backend.as_ref(), jobs_rx))
            .ok();
        Store {
            backend,
            jobs_tx: Some(jobs_tx),
            writer,
        }
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The committed value under `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(key)
    }

    /// Committed pairs with `start <= key < end` (empty `end`: no upper
    /// bound), in order, until `visit` returns false.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.backend.scan(start, end, visit)
    }

    /// Committed pairs whose key starts with `prefix`.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.backend.scan(prefix, &prefix_end(prefix), visit)
    }

    /// Runs `f` on the writer thread and returns its result once its writes
    /// are durable. If `f` fails, none of its writes are kept.
    pub fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<T, E> + Send + 'static,
    {
        let (result_tx, result_rx) = mpsc::sync_channel::<Result<T, E>>(1);
        let job: Job = Box::new(move |txn: &mut Txn<'_>| -> Reply {
            match f(txn) {
                Ok(value) => Box::new(move |committed: Result<(), StoreError>| {
                    let _ = result_tx.send(committed.map(|()| value).map_err(E::from));
                }),
                Err(e) => {
                    txn.discard_job();
                    Box::new(move |_| {
                        let _ = result_tx.send(Err(e));
                    })
                }
            }
        });
        let Some(jobs_tx) = &self.jobs_tx else {
            return Err(StoreError::WriterGone.into());
        };
        jobs_tx.send(job).map_err(|_| StoreError::WriterGone)?;
        result_rx.recv().unwrap_or_else(|_| {
            Err(
                StoreError::Bug("a store write panicked; none of its changes were stored".into())
                    .into(),
            )
        })
    }

    /// Stops the writer after the queued writes are committed.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.jobs_tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
            self.backend.close();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The smallest key greater than every key that starts with `prefix`;
/// empty (no bound) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

fn writer_loop(backend: &dyn Backend, jobs_rx: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs_rx.recv() {
        let mut group = BTreeMap::new();
        let mut replies = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let mut txn = Txn {
                backend,
                group: &group,
                own: BTreeMap::new(),
                discarded: false,
            };
            // A write closure that panics (a bug) must not take the writer,
            // and with it every later write, down: its writes are dropped
            // and its caller gets a bug report instead of an answer.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut txn))) {
                Ok(reply) => replies.push(reply),
                Err(_) => {
                    txn.discard_job();
                    tracing::error!("a store write panicked; its changes were dropped");
                }
            }
            if !txn.discarded {
                let own = std::mem::take(&mut txn.own);
                group.extend(own);
            }
            if replies.len() < MAX_GROUP {
                next = jobs_rx.try_recv().ok();
            }
        }
        let changes: Vec<Change> = group.into_iter().collect();
        let result = if changes.is_empty() {
            Ok(())
        } else {
            backend.commit(&changes)
        };
        for reply in replies {
            reply(match &result {
                Ok(()) => Ok(()),
                Err(StoreError::Backend { backend, detail }) => Err(StoreError::Backend {
                    backend,
                    detail: detail.clone(),
                }),
                Err(e) => Err(StoreError::Backend {
                    backend: backend.name(),
                    detail: e.to_string(),
                }),
            });
        }
    }
}

/// The view a write closure works through: its own uncommitted writes,
/// over those of the closures before it in the same commit, over the
/// committed state.
pub struct Txn<'a> {
    backend: &'a dyn Backend,
    group: &'a BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    own: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    discarded: bool,
}

impl Txn<'_> {
    /// The value under `key` as this write sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.own.get(key) {
            return Ok(value.clone());
        }
        if let Some(value) = self.group.get(key) {
            return Ok(value.clone());
        }
        self.backend.get(key)
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(key)?.is_some())
    }

    /// Stores `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert(key, Some(value));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.own.insert(key, None);
    }

    /// Pairs whose key starts with `prefix`, as this write sees them.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, StoreError> {
        let end = prefix_end(prefix);
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        self.backend.scan(prefix, &end, &mut |k, v| {
            merged.insert(k.to_vec(), Some(v.to_vec()));
            true
        })?;
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let range = (Bound::Included(prefix.to_vec()), upper);
        for layer in [self.group, &self.own] {
            for (k, v) in layer.range(range.clone()) {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    fn discard_job(&mut self) {
        self.own.clear();
        self.discarded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
        assert_eq!(prefix_end(&[0xff, 0xff]), Vec::<u8>::new());
    }
}
