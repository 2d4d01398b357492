// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The sled backend.
//!
//! sled 0.34.7 keeps writes in memory until `flush`, and on Linux its flush
//! calls `sync_file_range`, which neither persists file metadata nor empties
//! the drive's write cache. Its asynchronous flush also deadlocks when
//! several tasks call it at once (upstream spacejam/sled#1308, fixed only on
//! its unreleased main branch). This backend therefore:
//!
//! - applies each group of writes as one `apply_batch`, which sled makes
//!   atomic;
//! - then calls the blocking `flush`, from the store's single writer thread
//!   only, so the deadlock cannot occur;
//! - then fsyncs every file and folder of the database, so that the data
//!   and the metadata sled wrote are on stable storage.
//!
//! With that, an acknowledged write survives a process crash or kill -9 and,
//! as far as sled's own recovery is sound, a power failure. sled 0.34 is
//! no longer maintained and its on-disk format is marked unstable by its
//! authors, which is why redb is the default. Its page cache defaults here
//! to the store's configured cache size (sled's own default of 1 GiB would
//! dominate the gateway's memory).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Backend, Change, StoreError};

/// The database folder's name inside the data directory.
pub const DIR_NAME: &str = "sled";

/// The sled engine behind the [`Backend`] interface.
pub struct SledBackend {
    db: sled::Db,
    path: PathBuf,
    /// Files below `blobs/` already fsynced. sled writes each large value
    /// once into its own blob file and never changes it, so each needs one
    /// fsync, not one per commit (that made a commit's cost grow with the
    /// size of the store).
    synced_blobs: Mutex<HashSet<PathBuf>>,
}

fn backend_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: "sled",
        detail: e.to_string(),
    }
}

impl SledBackend {
    /// Opens or creates the database folder at `path`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes as u64)
            .open()
            .map_err(|e| {
                let text = e.to_string();
                // sled reports the lock held by another process as an I/O
                // error from its file lock.
                if text.contains("lock") || text.contains("WouldBlock") {
                    StoreError::Locked {
                        path: path.to_path_buf(),
                    }
                } else {
                    backend_error(format!("cannot open {}: {text}", path.display()))
                }
            })?;
        Ok(SledBackend {
            db,
            path: path.to_path_buf(),
            synced_blobs: Mutex::new(HashSet::new()),
        })
    }

    /// fsyncs the database's files (blob files only when new), then its
    /// folders, so that new directory entries are durable too.
    fn sync_files(&self) -> Result<(), StoreError> {
        self.sync_dir(&self.path)
            .map_err(|e| backend_error(format!("fsync: {e}")))
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        let in_blobs = dir.file_name().is_some_and(|n| n == "blobs");
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                self.sync_dir(&path)?;
                continue;
            }
            if in_blobs {
                let mut synced = self
                    .synced_blobs
                    .lock()
                    .map_err(|_| std::io::Error::other("blob set lock poisoned"))?;
                if synced.contains(&path) {
                    continue;
                }
                std::fs::File::open(&path)?.sync_all()?;
                synced.insert(path);
            } else {
                std::fs::File::open(&path)?.sync_all()?;
            }
        }
        std::fs::File::open(dir)?.sync_all()
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(backend_error)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let iter = if end.is_empty() {
            self.db.range(start..)
        } else {
            self.db.range(start..end)
        };
        for entry in iter {
            let (k, v) = entry.map_err(backend_error)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in changes {
            match value {
                Some(value) => batch.insert(key.as_slice(), value.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        self.db.apply_batch(batch).map_err(backend_error)?;
        self.db.flush().map_err(backend_error)?;
        self.sync_files()
    }
}
