// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Threads compared with an independent implementation: Dovecot's
//! `UID THREAD REFS`, on the threading mailboxes of Dovecot's own imaptest
//! suite, through a private Dovecot started for the test.
//!
//! The grouping must be the same as Dovecot's except in the two cases that
//! `src/archive/thread.rs` documents as deliberate: reference loops (here
//! every link counts) and repeated Message-IDs (here they share a thread).
//! Both directions are checked: where Dovecot differs, it differs exactly
//! as documented, and nowhere else.

// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{Dovecot, python_json, root, shared_corpus, skip};
use mailnotary::archive::{Archive, Ingested};
use mailnotary::envelope::{Envelope, Source};
use mailnotary::source::{Found, walk};
use mailnotary::store::StoreOptions;

type Partition = BTreeSet<BTreeSet<usize>>;

fn dovecot_partitions(dovecot: &Dovecot, files: &[PathBuf]) -> BTreeMap<String, Partition> {
    let port = dovecot.port.to_string();
    let mut args: Vec<std::ffi::OsString> = [
        "--host",
        "127.0.0.1",
        "--user",
        "tester",
        "--password",
        "secret",
        "--port",
        &port,
        "--compact",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.extend(files.iter().map(|f| f.as_os_str().to_owned()));
    let json = python_json("dovecot_threads.py", &args);
    let mut result = BTreeMap::new();
    for (file, answer) in json.as_object().unwrap() {
        let partition = answer["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                t.as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect();
        result.insert(name_of(Path::new(file)), partition);
    }
    result
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn our_partition(file: &Path) -> Partition {
    let dir = tempfile::tempdir().unwrap();
    let archive = Archive::open(dir.path(), &StoreOptions::default()).unwrap();
    let mut ids = Vec::new();
    walk(&[file.to_path_buf()], &mut |found| {
        if let Found::Message {
            bytes, mbox_index, ..
        } = found
        {
            let envelope = Envelope {
                received_at: 1_770_000_000_000,
                source: Source::Import {
                    path: file.display().to_string(),
                    mbox_index,
                },
            };
            match archive.ingest(envelope, bytes).unwrap() {
                Ingested::Stored(id) => ids.push(id),
                Ingested::Sighting(_) => panic!("{}: identical messages", file.display()),
            }
        }
    });
    let mut groups: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
    for (index, id) in ids.iter().enumerate() {
        let record = archive.message(id).unwrap().unwrap();
        let thread = archive.thread_of(&record).unwrap();
        groups.entry(thread.0).or_default().insert(index);
    }
    groups.into_values().collect()
}

fn partition(groups: &[&[usize]]) -> Partition {
    groups.iter().map(|g| g.iter().copied().collect()).collect()
}

#[test]
fn threads_match_dovecot_refs_except_where_documented() {
    if !Path::new("/usr/sbin/dovecot").exists() {
        return skip(
            "threads_match_dovecot_refs_except_where_documented",
            "Dovecot is not installed (Debian package dovecot-imapd)",
        );
    }
    let corpus = shared_corpus()
        .map(|c| c.join("dovecot-imaptest"))
        .unwrap_or_else(|| root().join("sample-mails/corpus/dovecot-imaptest"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| name_of(p).starts_with("thread") && name_of(p).ends_with(".mbox"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "threading mailboxes in {}",
        corpus.display()
    );

    let dovecot = Dovecot::start().unwrap_or_else(|e| panic!("starting Dovecot: {e}"));
    let theirs = dovecot_partitions(&dovecot, &files);

    // The deliberate differences, as documented in src/archive/thread.rs.
    let documented: BTreeMap<&str, (Partition, Partition)> = [
        // b references a and c, c references b: Dovecot drops a link to
        // break the loop and leaves a alone; every link counts here.
        (
            "thread.mbox",
            (partition(&[&[1, 2], &[0]]), partition(&[&[0, 1, 2]])),
        ),
        // Two messages with the same Message-ID and nothing else linking them.
        (
            "thread2.mbox",
            (partition(&[&[0], &[1]]), partition(&[&[0, 1]])),
        ),
        (
            "thread3.mbox",
            (partition(&[&[0], &[1]]), partition(&[&[0, 1]])),
        ),
    ]
    .into_iter()
    .collect();

    let mut compared = 0;
    for file in &files {
        let name = name_of(file);
        let ours = our_partition(file);
        let dovecot = &theirs[&name];
        // Ours is never finer: whatever Dovecot groups, we group too.
        for group in dovecot {
            assert!(
                ours.iter().any(|g| group.is_subset(g)),
                "{name}: Dovecot's thread {group:?} is split here: {ours:?}"
            );
        }
        match documented.get(name.as_str()) {
            Some((expected_dovecot, expected_ours)) => {
                assert_eq!(
                    dovecot, expected_dovecot,
                    "{name}: Dovecot's answer changed"
                );
                assert_eq!(&ours, expected_ours, "{name}: our threads");
            }
            None => assert_eq!(&ours, dovecot, "{name}: threads differ from Dovecot"),
        }
        compared += 1;
    }
    assert_eq!(compared, files.len());
}
