// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The store's contract, run against both backends.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mailnotary::store::{BackendKind, Store, StoreError, StoreOptions};

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
