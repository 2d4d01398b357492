// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The archive pipeline through the library: deduplication, threads, gaps
//! and the store check.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

use mailnotary::archive::query::{Query, Selector};
use mailnotary::archive::{Archive, Ingested, keys};
use mailnotary::envelope::{Envelope, Source};
use mailnotary::store::{BackendKind, StoreError, StoreOptions};

fn open(dir: &std::path::Path, backend: BackendKind) -> Archive {
    let options = StoreOptions {
        backend,
        cache_bytes: 8 * 1024 * 1024,
    };
    Archive::open(dir, &options).unwrap()
}

fn envelope(name: &str) -> Envelope {
    Envelope {
        received_at: 1_770_000_000_000,
        source: Source::Import {
            path: name.into(),
            mbox_index: None,
        },
    }
}

fn mail(id: &str, refs: &[&str], subject: &str) -> Vec<u8> {
    let mut m = format!("From: a@example.com\r\nTo: b@example.net\r\nSubject: {subject}\r\n");
    m += "Date: Mon, 2 Feb 2026 09:00:00 +0000\r\n";
    m += &format!("Message-ID: <{id}>\r\n");
    if let Some(last) = refs.last() {
        m += &format!("In-Reply-To: <{last}>\r\n");
        let list: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();
        m += &format!("References: {}\r\n", list.join(" "));
    }
    m += "\r\nbody of ";
    m += id;
    m += "\r\n";
    m.into_bytes()
}

fn thread_ids(archive: &Archive, of: &str) -> Vec<String> {
    archive
        .find(&Query {
            selector: Selector::Thread(of.into()),
            since: None,
            until: None,
        })
        .unwrap()
        .into_iter()
        .map(|r| r.metadata.message_id.unwrap_or_default())
        .collect()
}

#[test]
fn identical_bytes_add_a_sighting_not_a_message() {
    for backend in [BackendKind::Redb, BackendKind::Sled] {
        let dir = tempfile::tempdir().unwrap();
        let archive = open(dir.path(), backend);
        let bytes = mail("m1@x", &[], "hello");
        let first = archive.ingest(envelope("a.eml"), bytes.clone()).unwrap();
        let second = archive.ingest(envelope("b.eml"), bytes.clone()).unwrap();
        let Ingested::Stored(id) = first else {
            panic!("first ingest stores")
        };
        assert_eq!(second, Ingested::Sighting(id));
        let sightings = archive.sightings(&id).unwrap();
        assert_eq!(sightings.len(), 1);
        assert_eq!(
            sightings[0].envelope.source,
            envelope("b.eml").source,
            "the sighting keeps its own envelope"
        );
        assert_eq!(thread_ids(&archive, "m1@x"), vec!["m1@x"]);

        // Different bytes of the same message (another mailbox's copy) are
        // a second message in the same thread.
        let mut copy = b"Received: by mx.example.net\r\n".to_vec();
        copy.extend_from_slice(&bytes);
        assert!(matches!(
            archive.ingest(envelope("c.eml"), copy).unwrap(),
            Ingested::Stored(_)
        ));
        assert_eq!(thread_ids(&archive, "<m1@x>").len(), 2);
    }
}

#[test]
fn a_reply_before_its_parent_joins_when_the_parent_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    archive
        .ingest(
            envelope("r"),
            mail("reply@x", &["root@x", "parent@x"], "Re: q"),
        )
        .unwrap();
    let t = archive.resolve_thread("reply@x").unwrap().unwrap();
    let view = archive.thread(t).unwrap();
    assert_eq!(view.messages.len(), 1);
    let mut gaps = view.gaps.clone();
    gaps.sort();
    assert_eq!(
        gaps,
        vec!["parent@x", "root@x"],
        "both named parents are gaps"
    );

    archive
        .ingest(envelope("p"), mail("parent@x", &["root@x"], "q"))
        .unwrap();
    let view = archive
        .thread(archive.resolve_thread("parent@x").unwrap().unwrap())
        .unwrap();
    assert_eq!(view.messages.len(), 2);
    assert_eq!(view.gaps, vec!["root@x"]);
    // The gap's own Message-ID finds the thread too.
    assert_eq!(thread_ids(&archive, "root@x").len(), 2);
}

#[test]
fn a_message_linking_two_threads_merges_them_and_old_numbers_still_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    archive
        .ingest(envelope("1"), mail("a@x", &[], "one"))
        .unwrap();
    archive
        .ingest(envelope("2"), mail("b@x", &[], "two"))
        .unwrap();
    let ta = archive.resolve_thread("a@x").unwrap().unwrap();
    let tb = archive.resolve_thread("b@x").unwrap().unwrap();
    assert_ne!(ta, tb);

    archive
        .ingest(envelope("3"), mail("c@x", &["a@x", "b@x"], "both"))
        .unwrap();
    let merged = archive.resolve_thread("c@x").unwrap().unwrap();
    assert_eq!(merged, ta.min(tb));
    for old in [ta, tb] {
        assert_eq!(
            archive.resolve_thread(&old.to_string()).unwrap(),
            Some(merged),
            "{old} resolves after the merge"
        );
    }
    let mut ids = thread_ids(&archive, &tb.to_string());
    ids.sort();
    assert_eq!(ids, vec!["a@x", "b@x", "c@x"]);
}

#[test]
fn the_same_subject_does_not_join_a_thread() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    archive
        .ingest(envelope("1"), mail("x@a", &[], "Price"))
        .unwrap();
    archive
        .ingest(envelope("2"), mail("y@b", &[], "Re: Price"))
        .unwrap();
    assert_eq!(thread_ids(&archive, "x@a"), vec!["x@a"]);
    assert_eq!(thread_ids(&archive, "y@b"), vec!["y@b"]);
}

#[test]
fn messages_without_message_id_get_their_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    let no_id = b"From: a@x\r\nSubject: none\r\n\r\nbody\r\n".to_vec();
    let Ingested::Stored(id) = archive.ingest(envelope("n"), no_id).unwrap() else {
        panic!("stored")
    };
    let record = archive.message(&id).unwrap().unwrap();
    assert!(record.anomalies.iter().any(|a| a.name() == "no-message-id"));
    let thread = archive.thread_of(&record).unwrap();
    let view = archive.thread(thread).unwrap();
    assert_eq!(view.messages.len(), 1);
    assert!(view.gaps.is_empty());
    assert_eq!(
        archive.resolve_thread(&id.to_string()).unwrap(),
        Some(thread),
        "a receipt id finds the thread"
    );
}

#[test]
fn check_finds_bytes_changed_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    let Ingested::Stored(id) = archive
        .ingest(envelope("m"), mail("m@x", &[], "USD 1.85"))
        .unwrap()
    else {
        panic!("stored")
    };
    archive
        .ingest(envelope("n"), mail("n@x", &[], "other"))
        .unwrap();
    let report = archive
        .check(&mailnotary::signing::Trust::new(Vec::new()), &mut |_| {})
        .unwrap();
    assert_eq!((report.messages, report.blobs), (2, 2));
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Change one byte of the stored message, as an attacker with access to
    // the store file could.
    let key = keys::blob(&id);
    archive
        .store()
        .write(move |txn| -> Result<(), StoreError> {
            let mut blob = txn.get(&key)?.unwrap();
            let at = blob.len() - 5;
            blob[at] ^= 1;
            txn.put(key, blob);
            Ok(())
        })
        .unwrap();
    let report = archive
        .check(&mailnotary::signing::Trust::new(Vec::new()), &mut |_| {})
        .unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].subject, id.to_string());
    assert!(report.problems[0].detail.contains("hash to"));
}

#[test]
fn date_ranges_filter_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    for (id, date) in [
        ("jan@x", "Thu, 15 Jan 2026 10:00:00 +0000"),
        ("feb@x", "Sun, 15 Feb 2026 10:00:00 +0000"),
        ("mar@x", "Sun, 15 Mar 2026 10:00:00 +0000"),
    ] {
        let m = format!(
            "From: a@x\r\nSubject: monthly report\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n\r\nb\r\n"
        );
        archive.ingest(envelope(id), m.into_bytes()).unwrap();
    }
    let found = archive
        .find(&Query {
            selector: Selector::Subject("MONTHLY".into()),
            since: Some(1_769_904_000), // 2026-02-01
            until: Some(1_772_323_199), // 2026-02-28T23:59:59
        })
        .unwrap();
    let ids: Vec<_> = found
        .iter()
        .filter_map(|r| r.metadata.message_id.clone())
        .collect();
    assert_eq!(ids, vec!["feb@x"]);
    let by_address = archive
        .find(&Query {
            selector: Selector::Address("A@X".into()),
            since: None,
            until: None,
        })
        .unwrap();
    assert_eq!(by_address.len(), 3, "address lookups ignore case");
}

#[test]
fn check_follows_evidence_and_the_batch_chain() {
    use mailnotary::archive::evidence::ReceiptSigner;
    use mailnotary::receipt::content::Issuer;
    use mailnotary::tsa::Tsa;
    use mailnotary::tsa::pki::LocalPki;

    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    let pki = LocalPki::open_or_create(dir.path(), "gw").unwrap();
    let signer = ReceiptSigner {
        issuer: Issuer::default(),
        key: pki.receipt.clone(),
    };
    let tsa = Tsa::new(pki);
    for batch in 0..3 {
        for i in 0..4 {
            let id = format!("b{batch}m{i}@x");
            archive.ingest(envelope(&id), mail(&id, &[], "s")).unwrap();
        }
        let summary = archive.stamp_pending(&signer, &tsa, 100).unwrap().unwrap();
        assert_eq!(summary.batch.messages, 4);
    }
    assert!(archive.stamp_pending(&signer, &tsa, 100).unwrap().is_none());
    let report = archive
        .check(&mailnotary::signing::Trust::new(Vec::new()), &mut |_| {})
        .unwrap();
    assert_eq!((report.messages, report.batches), (12, 3));
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Rewrite batch 2 as if its predecessor had another root.
    let mut batch = archive.batch(2).unwrap().unwrap();
    batch.previous_root = Some("00".repeat(32));
    let value = mailnotary::archive::record::encode(&batch).unwrap();
    archive
        .store()
        .write(move |txn| -> Result<(), StoreError> {
            txn.put(keys::batch(2), value);
            Ok(())
        })
        .unwrap();
    let report = archive
        .check(&mailnotary::signing::Trust::new(Vec::new()), &mut |_| {})
        .unwrap();
    assert!(
        report.problems.iter().any(
            |p| p.subject == "batch 2" && p.detail.contains("not the root of the batch before")
        ),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_failing_tsa_leaves_messages_pending_and_a_later_batch_takes_them() {
    use mailnotary::archive::evidence::{ReceiptSigner, Stamper};
    use mailnotary::hashtree::Hash;
    use mailnotary::receipt::content::Issuer;
    use mailnotary::tsa::Tsa;
    use mailnotary::tsa::pki::LocalPki;

    struct Down;
    impl Stamper for Down {
        fn name(&self) -> String {
            "down".into()
        }
        fn stamp(&self, _: &Hash) -> Result<Vec<u8>, String> {
            Err("connection refused".into())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    let pki = LocalPki::open_or_create(dir.path(), "gw").unwrap();
    let signer = ReceiptSigner {
        issuer: Issuer::default(),
        key: pki.receipt.clone(),
    };
    let Ingested::Stored(id) = archive
        .ingest(envelope("1"), mail("p@x", &[], "s"))
        .unwrap()
    else {
        panic!("stored")
    };
    let err = archive.stamp_pending(&signer, &Down, 10).unwrap_err();
    assert!(
        err.to_string().contains("down failed: connection refused"),
        "{err}"
    );
    assert!(archive.is_pending(&id).unwrap());
    // The receipt signed for the failed batch is kept (signed, pending);
    // no evidence and no batch are written.
    let kept = archive.receipt(&id).unwrap().expect("the receipt is kept");
    assert!(archive.evidence(&id).unwrap().is_none());
    assert!(archive.last_batch().unwrap().is_none());

    let summary = archive
        .stamp_pending(&signer, &Tsa::new(pki), 10)
        .unwrap()
        .unwrap();
    assert_eq!(summary.batch.number, 1);
    assert!(!archive.is_pending(&id).unwrap());
    assert!(archive.evidence(&id).unwrap().is_some());
    assert_eq!(
        archive.receipt(&id).unwrap().unwrap().signed,
        kept.signed,
        "the kept receipt is the one stamped, not signed again"
    );
}

#[test]
fn the_running_stamper_backs_off_while_the_tsa_is_down_then_stamps_everything() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use mailnotary::archive::evidence::{ReceiptSigner, Stamper};
    use mailnotary::archive::stamper::Pacing;
    use mailnotary::hashtree::Hash;
    use mailnotary::receipt::content::Issuer;
    use mailnotary::tsa::Tsa;
    use mailnotary::tsa::pki::LocalPki;

    /// Refuses its first `down_for` requests, then stamps with the
    /// built-in TSA; records when each request came.
    struct Recovering {
        tsa: Tsa,
        down_for: usize,
        calls: AtomicUsize,
        times: std::sync::Mutex<Vec<Instant>>,
    }
    impl Stamper for Recovering {
        fn name(&self) -> String {
            "recovering".into()
        }
        fn stamp(&self, digest: &Hash) -> Result<Vec<u8>, String> {
            self.times.lock().unwrap().push(Instant::now());
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.down_for {
                return Err("connection refused".into());
            }
            self.tsa.stamp(digest, None).map_err(|e| e.to_string())
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let archive = Arc::new(open(dir.path(), BackendKind::Redb));
    let pki = LocalPki::open_or_create(dir.path(), "gw").unwrap();
    let signer = ReceiptSigner {
        issuer: Issuer::default(),
        key: pki.receipt.clone(),
    };
    let stamper = Arc::new(Recovering {
        tsa: Tsa::new(pki),
        down_for: 3,
        calls: AtomicUsize::new(0),
        times: std::sync::Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let pacing = Pacing {
        window: Duration::from_millis(50),
        max_batch: 2,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        until_idle: false,
    };
    let runner = {
        let (archive, stamper, stop) = (archive.clone(), stamper.clone(), stop.clone());
        std::thread::spawn(move || archive.run_stamper(&signer, stamper.as_ref(), pacing, &stop))
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let Ingested::Stored(id) = archive
            .ingest(envelope(&i.to_string()), mail(&format!("m{i}@x"), &[], "s"))
            .unwrap()
        else {
            panic!("stored")
        };
        ids.push(id);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.iter().any(|id| archive.is_pending(id).unwrap()) {
        assert!(Instant::now() < deadline, "the stamper did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let stats = runner.join().unwrap().unwrap();
    assert_eq!(stats.failures, 3);
    assert_eq!(stats.messages, 5);
    // Five messages at two per batch: at least three batches, chained.
    assert!(stats.batches >= 3, "{stats:?}");
    for id in &ids {
        assert!(archive.evidence(id).unwrap().is_some());
    }
    // The waits after the failures doubled: 100, 200, 400 ms at least.
    let times = stamper.times.lock().unwrap();
    for (i, least) in [100u64, 200, 400].into_iter().enumerate() {
        let gap = times[i + 1] - times[i];
        assert!(gap >= Duration::from_millis(least), "wait {i}: {gap:?}");
    }
    let report = archive
        .check(&mailnotary::signing::Trust::new(Vec::new()), &mut |_| {})
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn with_a_signer_each_message_is_stored_with_its_signed_receipt() {
    use mailnotary::archive::evidence::ReceiptSigner;
    use mailnotary::receipt::content::{Issuer, ReceiptContent};
    use mailnotary::signing::Trust;
    use mailnotary::tsa::Tsa;
    use mailnotary::tsa::pki::LocalPki;

    let dir = tempfile::tempdir().unwrap();
    let archive = open(dir.path(), BackendKind::Redb);
    let pki = LocalPki::open_or_create(dir.path(), "gw").unwrap();
    let trust = Trust::new(vec![pki.ca.clone()]);
    let signer = ReceiptSigner {
        issuer: Issuer::default(),
        key: pki.receipt.clone(),
    };
    archive.set_receipt_signer(signer.clone());
    let Ingested::Stored(id) = archive
        .ingest(envelope("1"), mail("signed@x", &[], "s"))
        .unwrap()
    else {
        panic!("stored")
    };
    // Stored: signed, pending, no evidence yet.
    let receipt = archive.receipt(&id).unwrap().expect("signed on storing");
    let verified = trust.verify(&receipt.signed, None).unwrap();
    assert_eq!(verified.content, receipt.content);
    let content = ReceiptContent::from_der(&receipt.content).unwrap();
    assert_eq!(content.receipt_id, id.to_string());
    assert!(archive.is_pending(&id).unwrap());
    assert!(archive.evidence(&id).unwrap().is_none());

    // The same bytes again: a sighting, and the receipt stays the one.
    assert!(matches!(
        archive
            .ingest(envelope("2"), mail("signed@x", &[], "s"))
            .unwrap(),
        Ingested::Sighting(_)
    ));
    // Stamping completes the receipt made on storing; it signs nothing new.
    archive
        .stamp_pending(&signer, &Tsa::new(pki), 10)
        .unwrap()
        .unwrap();
    assert_eq!(
        archive.receipt(&id).unwrap().unwrap().signed,
        receipt.signed
    );
    assert!(archive.evidence(&id).unwrap().is_some());
}
