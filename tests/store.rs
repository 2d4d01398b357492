// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The store's contract, run against both backends.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mailnotary::store::{Backend, BackendKind, Store, StoreError, StoreOptions};

const BACKENDS: [BackendKind; 2] = [BackendKind::Redb, BackendKind::Sled];

fn options(backend: BackendKind) -> StoreOptions {
    StoreOptions {
        backend,
        cache_bytes: 8 * 1024 * 1024,
    }
}

fn put(store: &Store, key: &[u8], value: &[u8]) {
    let (k, v) = (key.to_vec(), value.to_vec());
    store
        .write(move |txn| -> Result<(), StoreError> {
            txn.put(k, v);
            Ok(())
        })
        .unwrap();
}

fn scan_all(store: &Store, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    store
        .scan_prefix(prefix, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    out
}

#[test]
fn get_put_delete_and_ordered_scan() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &options(backend)).unwrap();
        assert_eq!(store.backend_name(), backend.name());
        for key in [&b"b2"[..], b"a1", b"b1", b"b10", b"c"] {
            put(&store, key, &[key, b"-value"].concat());
        }
        assert_eq!(store.get(b"a1").unwrap().as_deref(), Some(&b"a1-value"[..]));
        assert_eq!(store.get(b"zz").unwrap(), None);

        let keys: Vec<Vec<u8>> = scan_all(&store, b"b").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![b"b1".to_vec(), b"b10".to_vec(), b"b2".to_vec()],
            "{backend:?}"
        );

        // A bounded scan stops when the visitor says so.
        let mut seen = 0;
        store
            .scan(b"a", b"c", &mut |_, _| {
                seen += 1;
                seen < 2
            })
            .unwrap();
        assert_eq!(seen, 2);

        store
            .write(|txn| -> Result<(), StoreError> {
                txn.delete(b"b1".to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(store.get(b"b1").unwrap(), None);
        assert_eq!(scan_all(&store, b"b").len(), 2);
    }
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &options(backend)).unwrap();
        let result = store.write(|txn| -> Result<(), StoreError> {
            txn.put(b"half".to_vec(), b"written".to_vec());
            Err(StoreError::Corrupt("the caller gave up".into()))
        });
        assert!(result.is_err());
        assert_eq!(store.get(b"half").unwrap(), None, "{backend:?}");
    }
}

#[test]
fn a_write_sees_its_own_and_earlier_writes() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &options(backend)).unwrap();
        put(&store, b"k1", b"committed");
        let seen = store
            .write(|txn| -> Result<_, StoreError> {
                txn.put(b"k2".to_vec(), b"mine".to_vec());
                txn.delete(b"k1".to_vec());
                let k1 = txn.get(b"k1")?;
                let k2 = txn.get(b"k2")?;
                let listed = txn.scan_prefix(b"k")?;
                Ok((k1, k2, listed))
            })
            .unwrap();
        assert_eq!(seen.0, None);
        assert_eq!(seen.1.as_deref(), Some(&b"mine"[..]));
        assert_eq!(seen.2, vec![(b"k2".to_vec(), b"mine".to_vec())]);
    }
}

#[test]
fn concurrent_writers_all_land_and_survive_reopening() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Arc::new(Store::open(dir.path(), &options(backend)).unwrap());
            let threads: Vec<_> = (0..8u8)
                .map(|t| {
                    let store = Arc::clone(&store);
                    std::thread::spawn(move || {
                        for i in 0..50u32 {
                            let key = [&[b'w', t][..], &i.to_be_bytes()].concat();
                            // Each write reads a shared counter and bumps it:
                            // the writer runs writes one after the other, so
                            // no increment may be lost.
                            store
                                .write(move |txn| -> Result<(), StoreError> {
                                    let n = txn
                                        .get(b"counter")?
                                        .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
                                        .unwrap_or(0);
                                    txn.put(b"counter".to_vec(), (n + 1).to_be_bytes().to_vec());
                                    txn.put(key, vec![t; 100]);
                                    Ok(())
                                })
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        let store = Store::open(dir.path(), &options(backend)).unwrap();
        assert_eq!(scan_all(&store, b"w").len(), 400, "{backend:?}");
        assert_eq!(
            store.get(b"counter").unwrap(),
            Some(400u64.to_be_bytes().to_vec()),
            "{backend:?}"
        );
    }
}

#[test]
fn a_second_opener_gets_a_clear_error() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), &options(backend)).unwrap();
        match Store::open(dir.path(), &options(backend)) {
            Err(StoreError::Locked { .. }) => {}
            Err(other) => panic!("{backend:?}: expected Locked, got {other}"),
            Ok(_) => panic!("{backend:?}: a second open succeeded"),
        }
    }
}

#[test]
fn the_other_backend_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &options(BackendKind::Sled)).unwrap());
    let err = Store::open(dir.path(), &options(BackendKind::Redb))
        .err()
        .expect("opening a sled directory as redb fails");
    let text = err.to_string();
    assert!(
        text.contains("holds a sled store") && text.contains("--store sled"),
        "{text}"
    );
}

#[test]
fn a_panicking_write_is_reported_and_the_writer_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &options(BackendKind::Redb)).unwrap();
    let result = store.write(|txn| -> Result<(), StoreError> {
        txn.put(b"lost".to_vec(), b"x".to_vec());
        panic!("a bug inside a write");
    });
    assert!(matches!(result, Err(StoreError::Bug(_))));
    put(&store, b"after", b"ok");
    assert_eq!(store.get(b"after").unwrap().as_deref(), Some(&b"ok"[..]));
    assert_eq!(store.get(b"lost").unwrap(), None);
}

/// A small deterministic random source for the model tests.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn engine(backend: BackendKind, dir: &std::path::Path) -> Arc<dyn mailnotary::store::Backend> {
    use mailnotary::store::{redb_backend::RedbBackend, sled_backend::SledBackend};
    match backend {
        BackendKind::Redb => Arc::new(RedbBackend::open(&dir.join("store.redb"), 1 << 23).unwrap()),
        BackendKind::Sled => Arc::new(SledBackend::open(&dir.join("sled"), 1 << 23).unwrap()),
    }
}

/// Everything the backend holds in `[start, end)`, through its scan.
fn scanned(
    b: &dyn mailnotary::store::Backend,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    b.scan(start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        out.len() < limit
    })
    .unwrap();
    out
}

/// The write-ahead log over each engine behaves like an ordered map
/// through random puts, deletes, gets and bounded scans, while its tables
/// are handed to the engine at random moments.
#[test]
fn the_log_over_an_engine_behaves_like_a_map() {
    use mailnotary::store::wal::WalBackend;
    use std::collections::BTreeMap;
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let wal = WalBackend::open(engine(backend, dir.path()), &dir.path().join("wal")).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let key = |n: u64| vec![b'k', (n % 7) as u8, (n / 7 % 40) as u8];
        for step in 0..3000u64 {
            let mut changes = Vec::new();
            for _ in 0..(rng.next() % 5 + 1) {
                let k = key(rng.next());
                if rng.next().is_multiple_of(4) {
                    model.remove(&k);
                    changes.push((k, None));
                } else {
                    let v = step.to_be_bytes().to_vec();
                    model.insert(k.clone(), v.clone());
                    changes.push((k, Some(v)));
                }
            }
            // Within one commit the last change of a key wins, as in the model.
            let mut last = BTreeMap::new();
            for (k, v) in changes {
                last.insert(k, v);
            }
            let changes: Vec<_> = last.into_iter().collect();
            wal.commit(&changes).unwrap();
            if rng.next().is_multiple_of(97) {
                wal.settle().unwrap();
            }
            if step % 50 == 0 {
                for n in 0..280 {
                    let k = key(n);
                    assert_eq!(
                        wal.get(&k).unwrap(),
                        model.get(&k).cloned(),
                        "{backend:?} step {step}"
                    );
                }
                let a = key(rng.next());
                let b = key(rng.next());
                let (start, end) = if a <= b { (a, b) } else { (b, a) };
                let limit = (rng.next() % 30 + 1) as usize;
                let want: Vec<_> = model
                    .range(start.clone()..end.clone())
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(
                    scanned(&wal, &start, &end, limit),
                    want,
                    "{backend:?} step {step}"
                );
                let all: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(
                    scanned(&wal, b"", b"", usize::MAX),
                    all,
                    "{backend:?} step {step}"
                );
            }
        }
        // After a clean close the engine alone holds everything, and the
        // log folder is empty.
        drop(wal);
        let plain = engine(backend, dir.path());
        let all: Vec<_> = model.into_iter().collect();
        assert_eq!(
            scanned(plain.as_ref(), b"", b"", usize::MAX),
            all,
            "{backend:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("wal")).unwrap().count(),
            0
        );
    }
}

/// What only the log holds when the process dies is replayed on open; a
/// record cut short at the end is dropped, the ones before it are kept.
#[test]
fn the_log_is_replayed_after_a_crash() {
    use mailnotary::store::wal::WalBackend;
    for backend in BACKENDS {
        let live = tempfile::tempdir().unwrap();
        let wal = WalBackend::open(engine(backend, live.path()), &live.path().join("wal")).unwrap();
        for n in 0..20u8 {
            wal.commit(&[(vec![b'm', n], Some(vec![n; 100]))]).unwrap();
        }
        wal.commit(&[(vec![b'm', 3], None)]).unwrap();
        // The moment of the crash: copy the log as it is on disk, before
        // the applier hands it over (it waits 1.5 s).
        let crashed = tempfile::tempdir().unwrap();
        let copy = crashed.path().join("wal");
        std::fs::create_dir_all(&copy).unwrap();
        let mut logs = Vec::new();
        for entry in std::fs::read_dir(live.path().join("wal")).unwrap() {
            let path = entry.unwrap().path();
            let to = copy.join(path.file_name().unwrap());
            std::fs::copy(&path, &to).unwrap();
            logs.push(to);
        }
        drop(wal);
        assert_eq!(logs.len(), 1, "{backend:?}");
        // Cut the last record in half, as a crash during its write would.
        let bytes = std::fs::read(&logs[0]).unwrap();
        std::fs::write(&logs[0], &bytes[..bytes.len() - 6]).unwrap();

        let reopened = WalBackend::open(engine(backend, crashed.path()), &copy).unwrap();
        for n in 0..20u8 {
            // The torn last record deleted m3; it never counted.
            assert_eq!(
                reopened.get(&[b'm', n]).unwrap(),
                Some(vec![n; 100]),
                "{backend:?} m{n}"
            );
        }
        drop(reopened);
        let plain = engine(backend, crashed.path());
        assert_eq!(scanned(plain.as_ref(), b"m", b"n", usize::MAX).len(), 20);
    }
}

/// An engine whose first commits are slow, as redb's are on a file of
/// many gigabytes: the log's tables fill up while a batch is handed over.
struct SlowEngine {
    inner: Arc<dyn mailnotary::store::Backend>,
    slow_commits: std::sync::atomic::AtomicUsize,
}

impl mailnotary::store::Backend for SlowEngine {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.scan(start, end, visit)
    }

    fn commit(&self, changes: &[mailnotary::store::Change]) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if self
            .slow_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            std::thread::sleep(std::time::Duration::from_millis(2500));
        }
        self.inner.commit(changes)
    }

    fn close(&self) {
        self.inner.close();
    }
}

/// While the engine is slow, writers keep the log busy: a hand-over that
/// a full table starts and one that age starts meet. Every acknowledged
/// write must reach the engine all the same (two hand-overs in a row once
/// replaced a waiting batch, and its log file was deleted with it).
#[test]
fn hand_overs_that_meet_while_the_engine_is_slow_lose_nothing() {
    use mailnotary::store::wal::WalBackend;
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let slow = Arc::new(SlowEngine {
            inner: engine(backend, dir.path()),
            slow_commits: std::sync::atomic::AtomicUsize::new(4),
        });
        let wal = Arc::new(WalBackend::open(slow, &dir.path().join("wal")).unwrap());
        // 256 KiB per commit, so that a table fills (32 MiB) within one
        // slow engine commit.
        let value = vec![0x5a; 64 * 1024];
        let per_writer = 1600u32;
        std::thread::scope(|scope| {
            for w in 0..2u8 {
                let (wal, value) = (Arc::clone(&wal), &value);
                scope.spawn(move || {
                    for n in (0..per_writer).step_by(4) {
                        let changes: Vec<_> = (n..n + 4)
                            .map(|n| {
                                let mut key = vec![b'w', w];
                                key.extend_from_slice(&n.to_be_bytes());
                                (key, Some(value.clone()))
                            })
                            .collect();
                        wal.commit(&changes).unwrap();
                    }
                });
            }
        });
        let missing = |b: &dyn mailnotary::store::Backend| -> Vec<(u8, u32)> {
            let mut out = Vec::new();
            for w in 0..2u8 {
                for n in 0..per_writer {
                    let mut key = vec![b'w', w];
                    key.extend_from_slice(&n.to_be_bytes());
                    if b.get(&key).unwrap().is_none() {
                        out.push((w, n));
                    }
                }
            }
            out
        };
        let lost = missing(wal.as_ref());
        assert!(
            lost.is_empty(),
            "{backend:?}: {} writes not readable",
            lost.len()
        );
        drop(wal);
        let plain = engine(backend, dir.path());
        let lost = missing(plain.as_ref());
        assert!(
            lost.is_empty(),
            "{backend:?}: {} acknowledged writes never reached the engine, from {:?} to {:?}",
            lost.len(),
            lost.first(),
            lost.last()
        );
    }
}
