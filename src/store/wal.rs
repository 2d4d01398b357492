// SPDX-License-Identifier: Apache-2.0 OR MIT
//! A write-ahead log in front of an engine.
//!
//! A commit of the store is a few dozen keys scattered over the engine's
//! B-tree (digest indexes, thread nodes, the message record), and an
//! engine commit writes every page those keys touch before its fsync. Done
//! for every small group of SMTP sessions, that page writing was most of
//! the time a message waited for its 250. So a commit here is one record
//! appended to a log file and one `fdatasync`: sequential, a few
//! kilobytes. The changes then live in an in-memory table that every read
//! consults before the engine, and a background thread hands them to the
//! engine in large batches, where pages are shared by many messages. Once
//! the engine has committed a batch durably, the log files that held it are
//! deleted.
//!
//! Durability is the log's: a commit returns after its record is synced,
//! so an acknowledged message survives a crash, kill -9 or power loss.
//! Opening a store replays every log file left in `wal/` into the engine
//! before anything else happens; a record cut short by a crash is where
//! its file ends (it was never acknowledged). A failed append (a full
//! disk) returns the error, and the next commit starts a new log file, so
//! a torn record can never hide the records after it. A clean close hands
//! everything to the engine and leaves `wal/` empty.
//!
//! Reads see the newest state: the table being filled, then the one being
//! handed over, then the engine. A scan merges them in key order; it is not
//! a snapshot, so a scan running while a batch is handed over may see later
//! values for some keys, never older ones.
//!
//! Memory: the tables hold at most about four times [`HAND_OVER_BYTES`];
//! when the engine falls that far behind, commits wait for it (and fail
//! after [`STALL_LIMIT`], which the SMTP listener answers with 451).
//!
//! Record format (little-endian): `u32` payload length, the first 8 bytes
//! of the payload's SHA-256, the payload. Payload: `u32` change count,
//! then per change `u32` key length, key, one byte (1 put, 0 delete), and
//! for a put `u32` value length and value. Files are named by a 16-digit
//! sequence number and start with the 8 bytes `MNWAL01\n`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::Digest;

use super::{Backend, Change, StoreError};

/// The folder of log files inside the data directory.
pub const DIR_NAME: &str = "wal";

const MAGIC: &[u8; 8] = b"MNWAL01\n";

/// The table is handed to the engine once it holds this many bytes...
/// (At a million messages, 16 MiB gave the same ingest rate as 32 MiB with
/// about 50 MiB less resident memory; see bench/RESULTS.md.)
pub const HAND_OVER_BYTES: usize = 16 * 1024 * 1024;
/// ...or once its oldest change is this old.
const HAND_OVER_AGE: Duration = Duration::from_millis(1500);
/// How long a commit waits for the engine to catch up before it fails.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

type Table = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

fn wal_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: "wal",
        detail: format!("{what}: {e}"),
    }
}

/// The log file being appended to.
struct Log {
    file: File,
    number: u64,
    /// A failed append left the file in doubt: the next commit starts a
    /// new one.
    broken: bool,
}

/// The in-memory tables, newest first.
#[derive(Default)]
struct Tables {
    active: Table,
    active_bytes: usize,
    active_since: Option<Instant>,
    /// Being handed to the engine, with the last log file number it came
    /// from.
    frozen: Option<(Arc<Table>, u64)>,
    /// Why the last hand-over failed, while it keeps failing.
    apply_error: Option<String>,
    closing: bool,
}

struct Shared {
    inner: Arc<dyn Backend>,
    dir: PathBuf,
    log: Mutex<Log>,
    tables: RwLock<Tables>,
    /// Wakes the applier (work to do) and committers (the engine caught up).
    changed: Condvar,
    changed_lock: Mutex<()>,
}

/// An engine behind a write-ahead log; see the module documentation.
pub struct WalBackend {
    shared: Arc<Shared>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WalBackend {
    /// Replays what `dir` holds into `inner`, then starts a new log.
    pub fn open(inner: Arc<dyn Backend>, dir: &Path) -> Result<WalBackend, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| wal_error(&format!("cannot create {}", dir.display()), e))?;
        let last = replay(inner.as_ref(), dir)?;
        let log = new_log(dir, last + 1)?;
        let shared = Arc::new(Shared {
            inner,
            dir: dir.to_path_buf(),
            log: Mutex::new(log),
            tables: RwLock::new(Tables::default()),
            changed: Condvar::new(),
            changed_lock: Mutex::new(()),
        });
        let worker = Arc::clone(&shared);
        let applier = std::thread::Builder::new()
            .name("store-applier".into())
            .spawn(move || apply_loop(&worker))
            .map_err(|e| wal_error("cannot start the applier", e))?;
        Ok(WalBackend {
            shared,
            applier: Mutex::new(Some(applier)),
        })
    }
}

impl WalBackend {
    /// Hands everything committed so far to the engine and waits until the
    /// engine holds it (at most [`STALL_LIMIT`]).
    pub fn settle(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        {
            let mut log = shared.log.lock().map_err(|_| poisoned())?;
            let waiting = shared
                .tables
                .read()
                .map_err(|_| poisoned())?
                .frozen
                .is_some();
            if waiting {
                drop(log);
                self.wait_frozen()?;
                log = shared.log.lock().map_err(|_| poisoned())?;
            }
            let empty = shared
                .tables
                .read()
                .map_err(|_| poisoned())?
                .active
                .is_empty();
            if !empty {
                shared.freeze(&mut log)?;
            }
        }
        self.wait_frozen()
    }

    fn wait_frozen(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let tables = self.shared.tables.read().map_err(|_| poisoned())?;
            if tables.frozen.is_none() {
                return Ok(());
            }
            let why = tables.apply_error.clone();
            drop(tables);
            if started.elapsed() >= STALL_LIMIT {
                return Err(wal_error(
                    "the store did not take the log",
                    why.unwrap_or_else(|| "timed out".into()),
                ));
            }
            self.shared.wait(Duration::from_millis(50));
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Bug("a lock of the write-ahead log was poisoned".into())
}

fn log_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.log"))
}

/// Creates log file `number` and makes its name durable.
fn new_log(dir: &Path, number: u64) -> Result<Log, StoreError> {
    let path = log_path(dir, number);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|e| wal_error(&format!("cannot create {}", path.display()), e))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(|e| wal_error(&format!("cannot write {}", path.display()), e))?;
    sync_dir(dir)?;
    Ok(Log {
        file,
        number,
        broken: false,
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| wal_error(&format!("cannot sync {}", dir.display()), e))
}

/// The log files in `dir`, oldest first.
fn log_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| wal_error(&format!("cannot list {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            files.push((number, path));
        }
    }
    files.sort();
    Ok(files)
}

fn encode(changes: &[Change]) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    let mut payload = Vec::with_capacity(4 + size);
    payload.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (key, value) in changes {
        payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
        payload.extend_from_slice(key);
        match value {
            Some(value) => {
                payload.push(1);
                payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
                payload.extend_from_slice(value);
            }
            None => payload.push(0),
        }
    }
    let mut record = Vec::with_capacity(12 + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&sha2::Sha256::digest(&payload)[..8]);
    record.extend_from_slice(&payload);
    record
}

/// Decodes one payload; None when it is malformed.
fn decode(payload: &[u8]) -> Option<Vec<Change>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Some(head)
    }
    fn take_u32(bytes: &mut &[u8]) -> Option<usize> {
        take(bytes, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let mut rest = payload;
    let count = take_u32(&mut rest)?;
    let mut changes = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let key_len = take_u32(&mut rest)?;
        let key = take(&mut rest, key_len)?.to_vec();
        let value = match take(&mut rest, 1)?[0] {
            1 => {
                let len = take_u32(&mut rest)?;
                Some(take(&mut rest, len)?.to_vec())
            }
            0 => None,
            _ => return None,
        };
        changes.push((key, value));
    }
    rest.is_empty().then_some(changes)
}

/// The complete records of one log file; reading stops at the first
/// record that is cut short or does not match its checksum.
fn read_log(path: &Path) -> Result<Vec<Vec<Change>>, StoreError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| wal_error(&format!("cannot read {}", path.display()), e))?;
    let mut records = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Ok(records);
    };
    while rest.len() >= 12 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(payload) = rest.get(12..12 + len) else {
            break;
        };
        if sha2::Sha256::digest(payload)[..8] != rest[4..12] {
            break;
        }
        match decode(payload) {
            Some(changes) => records.push(changes),
            None => break,
        }
        rest = &rest[12 + len..];
    }
    if !rest.is_empty() {
        tracing::warn!(
            file = %path.display(),
            bytes = rest.len(),
            "the write-ahead log ends in an incomplete record (a crash during a write that \
             was never acknowledged); it is ignored"
        );
    }
    Ok(records)
}

/// Applies every log file in `dir` to `inner`, deletes them, and returns
/// the highest file number seen.
fn replay(inner: &dyn Backend, dir: &Path) -> Result<u64, StoreError> {
    let files = log_files(dir)?;
    let Some(&(last, _)) = files.last() else {
        return Ok(0);
    };
    let mut merged = Table::new();
    let mut records = 0;
    for (_, path) in &files {
        for changes in read_log(path)? {
            records += 1;
            merged.extend(changes);
        }
    }
    if !merged.is_empty() {
        let changes: Vec<Change> = merged.into_iter().collect();
        inner.commit(&changes)?;
        tracing::info!(
            records,
            keys = changes.len(),
            "write-ahead log replayed into the store"
        );
    }
    for (_, path) in &files {
        std::fs::remove_file(path)
            .map_err(|e| wal_error(&format!("cannot remove {}", path.display()), e))?;
    }
    sync_dir(dir)?;
    Ok(last)
}

impl Shared {
    /// Moves the active table to the engine's queue, starting a new log
    /// file for what comes after; does nothing while a batch is still
    /// queued or when there is nothing to move. Called with the log lock
    /// held.
    ///
    /// The check is made here, under the log lock that every caller holds,
    /// because a caller's own earlier look at the tables may be stale: the
    /// applier decides that the active table is old enough, then waits for
    /// the log lock while a writer freezes the same table because it is
    /// full. Freezing again would replace the queued batch with the next
    /// one, and the log files of both would be deleted once the second
    /// reached the engine: acknowledged writes lost.
    fn freeze(&self, log: &mut Log) -> Result<(), StoreError> {
        {
            let tables = self.tables.read().map_err(|_| poisoned())?;
            if tables.frozen.is_some() || tables.active.is_empty() {
                return Ok(());
            }
        }
        let next = new_log(&self.dir, log.number + 1)?;
        let done = std::mem::replace(log, next).number;
        let mut tables = self.tables.write().map_err(|_| poisoned())?;
        let active = std::mem::take(&mut tables.active);
        tables.active_bytes = 0;
        tables.active_since = None;
        tables.frozen = Some((Arc::new(active), done));
        drop(tables);
        self.notify();
        Ok(())
    }

    fn notify(&self) {
        let _guard = self.changed_lock.lock();
        self.changed.notify_all();
    }

    /// Waits for a change of state, at most `timeout`.
    fn wait(&self, timeout: Duration) {
        if let Ok(guard) = self.changed_lock.lock() {
            let _ = self.changed.wait_timeout(guard, timeout);
        }
    }
}

/// The applier: hands frozen tables to the engine, and freezes the active
/// table when it is old enough.
fn apply_loop(shared: &Shared) {
    loop {
        let (frozen, closing, due) = match shared.tables.read() {
            Ok(t) => (
                t.frozen.clone(),
                t.closing,
                t.frozen.is_none()
                    && !t.active.is_empty()
                    && (t.closing || t.active_since.is_some_and(|s| s.elapsed() >= HAND_OVER_AGE)),
            ),
            Err(_) => return,
        };
        if let Some((table, upto)) = frozen {
            let changes: Vec<Change> = table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            match shared.inner.commit(&changes) {
                Ok(()) => {
                    if let Ok(mut t) = shared.tables.write() {
                        t.frozen = None;
                        t.apply_error = None;
                    }
                    if let Ok(files) = log_files(&shared.dir) {
                        for (number, path) in files {
                            if number <= upto {
                                let _ = std::fs::remove_file(path);
                            }
                        }
                    }
                    shared.notify();
                }
                Err(e) if closing => {
                    tracing::error!(error = %e, "handing the write-ahead log to the store failed \
                        at close; the log is kept and replayed when the store is next opened");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "handing the write-ahead log to the store failed; \
                        retrying (the data is safe in the log)");
                    if let Ok(mut t) = shared.tables.write() {
                        t.apply_error = Some(e.to_string());
                    }
                    shared.notify();
                    shared.wait(Duration::from_secs(1));
                }
            }
            continue;
        }
        if due {
            match shared.log.lock() {
                Ok(mut log) => {
                    if let Err(e) = shared.freeze(&mut log) {
                        tracing::error!(error = %e, "cannot start a new write-ahead log file");
                        shared.wait(Duration::from_secs(1));
                    }
                }
                Err(_) => return,
            }
            continue;
        }
        if closing {
            return;
        }
        shared.wait(Duration::from_millis(250));
    }
}

/// `table`'s pairs in `[start, end)`, `end` empty meaning no bound.
fn range<'a>(
    table: &'a Table,
    start: &[u8],
    end: &[u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a {
    use std::ops::Bound;
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end.to_vec())
    };
    table.range((Bound::Included(start.to_vec()), upper))
}

impl Backend for WalBackend {
    fn name(&self) -> &'static str {
        self.shared.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        {
            let tables = self.shared.tables.read().map_err(|_| poisoned())?;
            if let Some(value) = tables.active.get(key) {
                return Ok(value.clone());
            }
            if let Some(value) = tables.frozen.as_ref().and_then(|(t, _)| t.get(key)) {
                return Ok(value.clone());
            }
        }
        self.shared.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        // The newer layers' pairs in range, newest winning.
        let overlay: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
            let tables = self.shared.tables.read().map_err(|_| poisoned())?;
            let mut merged = Table::new();
            if let Some((frozen, _)) = &tables.frozen {
                merged.extend(range(frozen, start, end).map(|(k, v)| (k.clone(), v.clone())));
            }
            merged.extend(range(&tables.active, start, end).map(|(k, v)| (k.clone(), v.clone())));
            merged.into_iter().collect()
        };
        if overlay.is_empty() {
            return self.shared.inner.scan(start, end, visit);
        }
        let mut next = 0;
        let mut stopped = false;
        self.shared.inner.scan(start, end, &mut |key, value| {
            while let Some((k, v)) = overlay.get(next) {
                if k.as_slice() >= key {
                    break;
                }
                next += 1;
                if let Some(v) = v
                    && !visit(k, v)
                {
                    stopped = true;
                    return false;
                }
            }
            let shadowed = overlay.get(next).filter(|(k, _)| k.as_slice() == key);
            let go_on = match shadowed {
                Some((_, Some(newer))) => visit(key, newer),
                Some((_, None)) => true,
                None => visit(key, value),
            };
            if shadowed.is_some() {
                next += 1;
            }
            if !go_on {
                stopped = true;
            }
            go_on
        })?;
        if !stopped {
            for (k, v) in &overlay[next..] {
                if let Some(v) = v
                    && !visit(k, v)
                {
                    break;
                }
            }
        }
        Ok(())
    }

    fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        let shared = &self.shared;
        // Back-pressure: wait while the engine is far behind.
        let started = Instant::now();
        loop {
            let tables = shared.tables.read().map_err(|_| poisoned())?;
            if tables.frozen.is_none() || tables.active_bytes < 4 * HAND_OVER_BYTES {
                break;
            }
            let why = tables.apply_error.clone();
            drop(tables);
            if started.elapsed() >= STALL_LIMIT {
                return Err(wal_error(
                    "the store is not keeping up with the log",
                    why.unwrap_or_else(|| "it is still writing the previous batch".into()),
                ));
            }
            shared.wait(Duration::from_millis(100));
        }

        let record = encode(changes);
        let mut log = shared.log.lock().map_err(|_| poisoned())?;
        if log.broken {
            let number = log.number + 1;
            *log = new_log(&shared.dir, number)?;
        }
        let written = log
            .file
            .write_all(&record)
            .and_then(|()| log.file.sync_data());
        if let Err(e) = written {
            log.broken = true;
            return Err(wal_error("cannot write the write-ahead log", e));
        }
        let full = {
            let mut tables = shared.tables.write().map_err(|_| poisoned())?;
            for (key, value) in changes {
                tables.active_bytes += key.len() + value.as_ref().map_or(0, Vec::len);
                tables.active.insert(key.clone(), value.clone());
            }
            tables.active_since.get_or_insert_with(Instant::now);
            tables.active_bytes >= HAND_OVER_BYTES && tables.frozen.is_none()
        };
        if full {
            shared.freeze(&mut log)?;
        }
        Ok(())
    }

    fn close(&self) {
        if let Ok(mut tables) = self.shared.tables.write() {
            tables.closing = true;
        }
        self.shared.notify();
        let Some(applier) = self.applier.lock().ok().and_then(|mut a| a.take()) else {
            return;
        };
        let _ = applier.join();
        // Everything reached the engine: the log files hold nothing more.
        let drained = self
            .shared
            .tables
            .read()
            .is_ok_and(|t| t.active.is_empty() && t.frozen.is_none());
        if drained && let Ok(files) = log_files(&self.shared.dir) {
            for (_, path) in files {
                let _ = std::fs::remove_file(path);
            }
        }
        self.shared.inner.close();
    }
}

impl Drop for WalBackend {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored() {
        let changes: Vec<Change> = vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), None),
            (vec![0xff; 300], Some(vec![7; 5000])),
        ];
        let record = encode(&changes);
        assert_eq!(decode(&record[12..]).unwrap(), changes);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0000000000000001.log");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&record);
        bytes.extend_from_slice(&encode(&changes[..1]));
        let whole = bytes.len();
        bytes.extend_from_slice(&record[..record.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_log(&path).unwrap().len(), 2);
        // A flipped byte ends the file there.
        bytes.truncate(whole);
        bytes[MAGIC.len() + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_log(&path).unwrap().len(), 0);
    }
}
