// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mailnotary ingest`, `lookup` and `check` as a user runs them.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{dispute_file, mailnotary, root, shared_corpus, stderr, stdout};
use serde_json::Value;

const DISPUTE: &str = "sample-mails/dispute";
const PO: &str = "<e2b84f17-6c0a-4d93-8b5e-0f1a7c3d2e96@hanseatic-components.example>";
const CLAIM: &str = "<202603161448057719204@huarui-precision.example>";
const LAST: &str = "a91e6d2c-3f58-47b0-8c14-6b2f0e7d95a8@hanseatic-components.example";

fn lookup_json(data: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["lookup"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = mailnotary(data, &all);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "lookup failed: {}",
        stderr(&out)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("lookup --json prints JSON")
        .as_array()
        .expect("an array")
        .clone()
}

#[test]
fn every_sample_and_corpus_mail_ingests_without_a_panic() {
    let mut paths = vec![root().join("sample-mails")];
    if let Some(corpus) = shared_corpus() {
        paths.push(corpus);
    } else {
        eprintln!("SKIPPED part of this test: ../shared/corpus is not beside the repository");
    }
    for backend in ["redb", "sled"] {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec!["--store", backend, "ingest"];
        let path_strings: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        args.extend(path_strings.iter().map(String::as_str));
        let out = mailnotary(data.path(), &args);
        let (text, err) = (stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(0), "{backend}: {text}\n{err}");
        assert!(!err.contains("panicked"), "{backend}: {err}");
        assert!(text.contains(", 0 failed"), "{text}");
        let stored: u64 = text
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("the summary starts with the count");
        assert!(stored > 100, "{backend}: only {stored} stored");

        // Malformed mail is stored with its anomalies, not refused.
        let all = lookup_json(data.path(), &["--all"]);
        assert_eq!(all.len() as u64, stored);
        assert!(all.iter().any(|m| {
            m["anomalies"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "unparseable" || x == "no-header"))
        }));
        for m in &all {
            assert_eq!(m["raw_sha256"].as_str().map(str::len), Some(64));
        }

        let check = mailnotary(data.path(), &["--store", backend, "check"]);
        assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
        assert!(stdout(&check).contains("no problems"));
    }
}

#[test]
fn unreadable_and_non_mail_paths_fail_clearly_while_the_rest_ingests() {
    let data = tempfile::tempdir().unwrap();
    let out = mailnotary(
        data.path(),
        &[
            "ingest",
            "does/not/exist.eml",
            "sample-mails/dispute/attachments/报价单-Q-2026-118.pdf",
            "sample-mails/dispute/01-rfq.eml",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("does/not/exist.eml: no such file or folder"),
        "{err}"
    );
    assert!(err.contains("not an e-mail message"), "{err}");
    assert!(stdout(&out).starts_with("ingested 1 new message, 0 already present"));
    assert_eq!(lookup_json(data.path(), &["--all"]).len(), 1);
}

#[test]
fn reingesting_identical_bytes_records_a_sighting() {
    let data = tempfile::tempdir().unwrap();
    let file = "sample-mails/dispute/05-price-claim.eml";
    assert_eq!(
        mailnotary(data.path(), &["ingest", file]).status.code(),
        Some(0)
    );
    let again = mailnotary(data.path(), &["ingest", file]);
    assert!(stdout(&again).starts_with("ingested 0 new messages, 1 already present"));
    let found = lookup_json(data.path(), &["--message-id", CLAIM]);
    assert_eq!(found.len(), 1, "no second receipt");
    assert_eq!(found[0]["sightings"], 1);
}

#[test]
fn the_dispute_thread_is_whole_in_any_arrival_order_and_gaps_show() {
    let data = tempfile::tempdir().unwrap();
    // The later half first: the earlier messages are gaps until they come.
    let late: Vec<String> = (5..=9).map(dispute_file).collect();
    let mut args = vec!["ingest"];
    args.extend(late.iter().map(String::as_str));
    assert_eq!(mailnotary(data.path(), &args).status.code(), Some(0));

    let text = stdout(&mailnotary(data.path(), &["lookup", "--thread", LAST]));
    assert!(text.contains("5 messages"), "{text}");
    assert!(text.contains(&format!("gap: {PO}")), "{text}");

    assert_eq!(
        mailnotary(data.path(), &["ingest", DISPUTE]).status.code(),
        Some(0)
    );
    for any in [LAST, PO, CLAIM] {
        let thread = lookup_json(data.path(), &["--thread", any]);
        assert_eq!(thread.len(), 9, "thread of {any}");
        let ids: std::collections::BTreeSet<_> =
            thread.iter().map(|m| m["thread_id"].to_string()).collect();
        assert_eq!(ids.len(), 1, "one thread id");
    }
    let text = stdout(&mailnotary(data.path(), &["lookup", "--thread", CLAIM]));
    assert!(text.contains("9 messages, 0 gaps"), "{text}");

    // Messages come back in date order, with the fields DESIGN promises.
    let thread = lookup_json(data.path(), &["--thread", PO]);
    let dates: Vec<i64> = thread
        .iter()
        .map(|m| {
            chrono::DateTime::parse_from_rfc3339(m["date"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{dates:?}");
    for m in &thread {
        for field in [
            "message_id",
            "thread_id",
            "date",
            "from",
            "status",
            "receipt_id",
            "stamped_at",
            "raw_sha256",
            "canonical_sha256",
            "mode",
        ] {
            assert!(m.get(field).is_some(), "{field} missing");
        }
        assert_eq!(m["status"], "stamped");
        assert!(m["stamped_at"].is_string(), "{m}");
        assert_eq!(m["mode"], "archive");
    }
}

#[test]
fn lookup_by_address_subject_and_dates() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        mailnotary(data.path(), &["ingest", DISPUTE]).status.code(),
        Some(0)
    );
    let from_li = lookup_json(
        data.path(),
        &["--address", "LiWei@Huarui-Precision.example"],
    );
    assert!(from_li.len() >= 4, "{}", from_li.len());
    let invoices = lookup_json(data.path(), &["--subject", "invoice"]);
    assert!(!invoices.is_empty());
    assert!(invoices.iter().all(|m| {
        m["subject"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("invoice")
    }));
    let march = lookup_json(
        data.path(),
        &["--all", "--since", "2026-03-01", "--until", "2026-03-31"],
    );
    assert!(!march.is_empty());
    assert!(
        march
            .iter()
            .all(|m| m["date"].as_str().unwrap().starts_with("2026-03"))
    );

    let none = mailnotary(data.path(), &["lookup", "--message-id", "<nobody@nowhere>"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no message matches"));
    let bad = mailnotary(data.path(), &["lookup", "--all", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("2026-03-01"),
        "the error shows the expected form"
    );
}

#[test]
fn a_store_in_use_and_a_wrong_backend_are_clear_errors() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        mailnotary(data.path(), &["--store", "sled", "ingest", DISPUTE])
            .status
            .code(),
        Some(0)
    );
    // Without --store the existing engine is used; naming the other one is
    // refused with the way out.
    let found = mailnotary(data.path(), &["lookup", "--all"]);
    assert_eq!(found.status.code(), Some(0), "{}", stderr(&found));
    let wrong = mailnotary(data.path(), &["--store", "redb", "lookup", "--all"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("--store sled"),
        "{}",
        stderr(&wrong)
    );

    let held = mailnotary::archive::Archive::open(
        data.path(),
        &mailnotary::store::StoreOptions {
            backend: mailnotary::store::BackendKind::Sled,
            cache_bytes: 8 << 20,
        },
    )
    .unwrap();
    let busy = mailnotary(data.path(), &["--store", "sled", "lookup", "--all"]);
    assert_eq!(busy.status.code(), Some(2));
    assert!(
        stderr(&busy).contains("open in another process"),
        "{}",
        stderr(&busy)
    );
    drop(held);
}

#[test]
fn digest_prints_what_a_third_party_can_recompute() {
    let out = mailnotary(
        std::path::Path::new("unused"),
        &["digest", "--json", "sample-mails/dispute/02-quotation.eml"],
    );
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let raw = std::fs::read(root().join("sample-mails/dispute/02-quotation.eml")).unwrap();
    let expected = mailnotary::analysis::Sha256Digest::of(&raw).to_string();
    assert_eq!(v["raw_sha256"], expected.as_str());
}
