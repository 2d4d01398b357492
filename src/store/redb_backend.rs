// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The redb backend, the default.
//!
//! One file, `store.redb`, with one table of byte keys and byte values.
//! Every commit uses redb's default durability, which syncs the file before
//! the commit returns, so a write acknowledged by [`super::Store::write`]
//! survives a crash or a power failure.
//!
//! Every commit also saves redb's allocator state ("quick repair"), so that
//! opening the file after an unclean shutdown does not walk the whole file
//! to rebuild it. Without it the repair grew with the file, to 33 s at a
//! million messages (11 GB), during which a restarted gateway answered
//! nothing. Measured with `bench/million` at 200,000 messages: reopening
//! after kill -9 took 0.32 s instead of 3.28 s (archive mode) and 0.08 s
//! instead of 1.63 s (hash-only), for 3 to 10 per cent of ingest rate;
//! the write-ahead log in front keeps engine commits few and large, which
//! is what makes the extra write per commit cheap.
//!
//! redb allows one process per file; a second one gets
//! [`StoreError::Locked`].
//!
//! After a failed commit (a full disk, say) redb refuses every later
//! transaction until the file is opened again, so the backend closes the
//! database at the failure and opens it again on the next use: once space
//! returns, writes succeed without a restart. The failed commit left
//! nothing behind, since redb commits are atomic.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Backend, Change, StoreError};

/// The store's file name inside the data directory.
pub const FILE_NAME: &str = "store.redb";

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// The redb engine behind the [`Backend`] interface.
pub struct RedbBackend {
    path: PathBuf,
    cache_bytes: usize,
    /// None after a failed commit, until the next use opens it again.
    db: RwLock<Option<Database>>,
}

fn backend_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: "redb",
        detail: e.to_string(),
    }
}

impl RedbBackend {
    /// Opens or creates the file at `path`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Self::open_database(path, cache_bytes)?;
        Ok(RedbBackend {
            path: path.to_path_buf(),
            cache_bytes,
            db: RwLock::new(Some(db)),
        })
    }

    fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: path.to_path_buf(),
                },
                other => backend_error(format!("cannot open {}: {other}", path.display())),
            })?;
        // Create the table up front so that readers never meet a store
        // without it.
        let mut txn = db.begin_write().map_err(backend_error)?;
        txn.set_quick_repair(true);
        txn.open_table(KV).map_err(backend_error)?;
        txn.commit().map_err(backend_error)?;
        Ok(db)
    }

    /// Runs `f` on the open database, opening it again first if a failed
    /// commit closed it.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_error = || StoreError::Bug("the redb handle's lock was poisoned".into());
        {
            let guard = self.db.read().map_err(|_| lock_error())?;
            if let Some(db) = guard.as_ref() {
                return f(db);
            }
        }
        let mut guard = self.db.write().map_err(|_| lock_error())?;
        if guard.is_none() {
            *guard = Some(Self::open_database(&self.path, self.cache_bytes)?);
            tracing::info!(file = %self.path.display(), "store opened again after a failed write");
        }
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(lock_error()),
        }
    }

    fn commit_on(db: &Database, changes: &[Change]) -> Result<(), StoreError> {
        let mut txn = db.begin_write().map_err(backend_error)?;
        txn.set_quick_repair(true);
        {
            let mut table = txn.open_table(KV).map_err(backend_error)?;
            for (key, value) in changes {
                match value {
                    Some(value) => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(backend_error)?;
                    }
                    None => {
                        table.remove(key.as_slice()).map_err(backend_error)?;
                    }
                }
            }
        }
        txn.commit().map_err(backend_error)
    }
}

impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(backend_error)?;
            let table = txn.open_table(KV).map_err(backend_error)?;
            Ok(table
                .get(key)
                .map_err(backend_error)?
                .map(|v| v.value().to_vec()))
        })
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(backend_error)?;
            let table = txn.open_table(KV).map_err(backend_error)?;
            let range = if end.is_empty() {
                table.range(start..)
            } else {
                table.range(start..end)
            }
            .map_err(backend_error)?;
            for entry in range {
                let (k, v) = entry.map_err(backend_error)?;
                if !visit(k.value(), v.value()) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        let result = self.with_db(|db| Self::commit_on(db, changes));
        if result.is_err() {
            // redb wants the file opened again after an I/O error; close it
            // now (readers finish first) and open it on the next use.
            if let Ok(mut guard) = self.db.write() {
                *guard = None;
            }
        }
        result
    }
}
