// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The redb backend, the default.
//!
//! One file, `store.redb`, with one table of byte keys and byte values.
//! Every commit uses redb's default durability, which syncs the file before
//! the commit returns, so a write acknowledged by [`super::Store::write`]
//! survives a crash or a power failure. After an unclean shutdown redb
//! repairs the file when it is next opened; that takes longer as the file
//! grows (about a second per 400 MB measured on the development machines),
//! and `bench/` measures it at a million messages.
//!
//! redb allows one process per file; a second one gets
//! [`StoreError::Locked`].

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Backend, Change, StoreError};

/// The store's file name inside the data directory.
pub const FILE_NAME: &str = "store.redb";

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// The redb engine behind the [`Backend`] interface.
pub struct RedbBackend {
    db: Database,
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
        let txn = db.begin_write().map_err(backend_error)?;
        txn.open_table(KV).map_err(backend_error)?;
        txn.commit().map_err(backend_error)?;
        Ok(RedbBackend { db })
    }
}

impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(backend_error)?;
        let table = txn.open_table(KV).map_err(backend_error)?;
        Ok(table
            .get(key)
            .map_err(backend_error)?
            .map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend_error)?;
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
    }

    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend_error)?;
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
