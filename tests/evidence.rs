// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Evidence end to end: `mailnotary ingest` stores, signs and stamps; the
//! artifacts it keeps are then checked with tools that are not mailnotary:
//! `openssl cms -verify` for the receipt, `openssl ts -verify` for the
//! batch token, Bouncy Castle for the RFC 4998 evidence record.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{bouncy_castle, bouncy_castle_missing, have, mailnotary, root, skip, stdout};
use mailnotary::archive::Archive;
use mailnotary::archive::query::{Query, Selector};
use mailnotary::store::StoreOptions;
use sha2::{Digest, Sha256};

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn ingested_mail_gets_evidence_that_outside_tools_accept() {
    let test = "ingested_mail_gets_evidence_that_outside_tools_accept";
    if !have("openssl") {
        return skip(test, "openssl is not installed");
    }
    if let Some(why) = bouncy_castle_missing() {
        return skip(test, &why);
    }
    let data = tempfile::tempdir().unwrap();
    let out = mailnotary(data.path(), &["ingest", "sample-mails/dispute"]);
    assert!(
        stdout(&out).contains("stamped 9 messages in 1 batch"),
        "{}",
        stdout(&out)
    );
    let out = mailnotary(
        data.path(),
        &[
            "ingest",
            "sample-mails/corpus/cpython-test-email/msg_44.txt",
        ],
    );
    assert!(
        stdout(&out).contains("stamped 1 message in 1 batch"),
        "{}",
        stdout(&out)
    );
    let check = mailnotary(data.path(), &["check"]);
    assert!(
        stdout(&check).contains("and 2 batches: no problems"),
        "{}",
        stdout(&check)
    );

    let archive = Archive::open(data.path(), &StoreOptions::default()).unwrap();
    let first = archive.batch(1).unwrap().unwrap();
    let second = archive.batch(2).unwrap().unwrap();
    assert_eq!(first.messages, 9);
    assert_eq!(
        second.previous_root.as_deref(),
        Some(first.root.as_str()),
        "batches chain"
    );

    let ca = data.path().join("keys/ca.cert.pem");
    let files = tempfile::tempdir().unwrap();
    let messages = archive
        .find(&Query {
            selector: Selector::All,
            since: None,
            until: None,
        })
        .unwrap();
    assert_eq!(messages.len(), 10);
    let mut bc_args = Vec::new();
    for (i, record) in messages.iter().enumerate() {
        let id = record.id().unwrap();
        let receipt = archive.receipt(&id).unwrap().unwrap();
        let (signed, content) = (receipt.signed, receipt.content);
        let evidence = archive.evidence(&id).unwrap().unwrap();
        let receipt_path = files.path().join(format!("{i}.p7s"));
        let content_path = files.path().join(format!("{i}.der"));
        let ers_path = files.path().join(format!("{i}.ers"));
        std::fs::write(&receipt_path, &signed).unwrap();
        std::fs::write(&content_path, &content).unwrap();
        std::fs::write(&ers_path, &evidence.record).unwrap();

        // The receipt: signed by the gateway, over exactly this content.
        let (ok, text) = run(Command::new("openssl")
            .args(["cms", "-verify", "-inform", "DER", "-binary", "-in"])
            .arg(&receipt_path)
            .arg("-CAfile")
            .arg(&ca));
        assert!(ok, "receipt {i}: {text}");

        // The batch token: over the root, by the built-in TSA.
        let token_path = files.path().join(format!("{i}.tsr"));
        let token = archive.batch_token(evidence.batch.number).unwrap().unwrap();
        std::fs::write(&token_path, &token).unwrap();
        let (ok, text) = run(Command::new("openssl")
            .args([
                "ts",
                "-verify",
                "-token_in",
                "-digest",
                &evidence.batch.root,
                "-in",
            ])
            .arg(&token_path)
            .arg("-CAfile")
            .arg(&ca));
        assert!(ok && text.contains("Verification: OK"), "token {i}: {text}");

        // The record is for this receipt content's hash.
        let leaf = hex::encode(Sha256::digest(&content));
        assert_ne!(
            leaf, evidence.batch.root,
            "every batch has at least two leaves but the first"
        );
        bc_args.push(ers_path);
        bc_args.push(content_path);
    }
    let out = bouncy_castle("BcEvidenceRecord.java", &bc_args);
    let (ok, text) = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    );
    assert!(ok && text.trim() == "ok 10", "{text}");
}

#[test]
fn verify_matches_copies_and_attachments_and_refuses_changes() {
    let data = tempfile::tempdir().unwrap();
    let out = mailnotary(data.path(), &["ingest", "sample-mails/dispute"]);
    assert_eq!(out.status.code(), Some(0));
    let files = tempfile::tempdir().unwrap();
    let verify = |file: &Path, extra: &[&str]| {
        let mut args = vec!["verify", file.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let out = mailnotary(data.path(), &args);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), json)
    };

    // The message as stored.
    let (code, json) = verify(&root().join("sample-mails/dispute/05-price-claim.eml"), &[]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["matched"], "raw");
    assert!(json["stamped_at"].is_string());
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true)
    );

    // The other party's copy: LF line ends and a transport header added.
    let original =
        std::fs::read_to_string(root().join("sample-mails/dispute/05-price-claim.eml")).unwrap();
    let copy = format!(
        "Received: by mx.example.net\n{}",
        original.replace("\r\n", "\n")
    );
    let copy_path = files.path().join("copy.eml");
    std::fs::write(&copy_path, &copy).unwrap();
    let (code, json) = verify(&copy_path, &[]);
    assert_eq!(
        (code, json["matched"].as_str()),
        (Some(0), Some("canonical")),
        "{json}"
    );

    // The quotation PDF on its own.
    let pdf = root().join("sample-mails/dispute/attachments/报价单-Q-2026-118.pdf");
    let (code, json) = verify(&pdf, &[]);
    assert_eq!(
        (code, json["matched"].as_str()),
        (Some(0), Some("part")),
        "{json}"
    );

    // One character changed in the body: nothing matches.
    let changed = copy.replacen("1.85", "1.86", 1);
    assert_ne!(changed, copy);
    let changed_path = files.path().join("changed.eml");
    std::fs::write(&changed_path, changed).unwrap();
    let (code, json) = verify(&changed_path, &[]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["verified"], false);

    // A CA the gateway's certificates do not chain to: signatures fail.
    let stranger = tempfile::tempdir().unwrap();
    mailnotary::tsa::pki::LocalPki::open_or_create(stranger.path(), "stranger").unwrap();
    let foreign_ca = stranger.path().join("keys/ca.cert.pem");
    let (code, json) = verify(&pdf, &["--trust", foreign_ca.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{json}");
    let failed: Vec<_> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed, vec!["receipt signature", "timestamp"], "{json}");
}

#[test]
fn verify_detects_a_receipt_changed_in_the_store() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        mailnotary(
            data.path(),
            &["ingest", "sample-mails/dispute/02-quotation.eml"]
        )
        .status
        .code(),
        Some(0)
    );
    {
        let archive = Archive::open(data.path(), &StoreOptions::default()).unwrap();
        let record = archive
            .find(&Query {
                selector: Selector::All,
                since: None,
                until: None,
            })
            .unwrap()
            .remove(0);
        let id = record.id().unwrap();
        // Someone with write access to the store swaps one byte of the
        // signed receipt, as if to change what it says.
        let key = mailnotary::archive::keys::receipt(&id);
        archive
            .store()
            .write(move |txn| -> Result<(), mailnotary::store::StoreError> {
                let mut signed = txn.get(&key)?.unwrap();
                let at = signed.len() / 3;
                signed[at] ^= 0x01;
                txn.put(key, signed);
                Ok(())
            })
            .unwrap();
    }
    let out = mailnotary(
        data.path(),
        &["verify", "sample-mails/dispute/02-quotation.eml", "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let receipt_check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "receipt signature")
        .unwrap()
        .clone();
    assert_eq!(receipt_check["ok"], false, "{json}");
}

/// Flips one byte of the value under `key`, returning the original.
fn flip(data: &Path, key: Vec<u8>) -> Vec<u8> {
    let archive = Archive::open(data, &StoreOptions::default()).unwrap();
    let original = archive.store().get(&key).unwrap().unwrap();
    let mut changed = original.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    archive
        .store()
        .write(move |txn| -> Result<(), mailnotary::store::StoreError> {
            txn.put(key, changed);
            Ok(())
        })
        .unwrap();
    original
}

fn restore(data: &Path, key: Vec<u8>, value: Vec<u8>) {
    let archive = Archive::open(data, &StoreOptions::default()).unwrap();
    archive
        .store()
        .write(move |txn| -> Result<(), mailnotary::store::StoreError> {
            txn.put(key, value);
            Ok(())
        })
        .unwrap();
}

#[test]
fn check_finds_a_flipped_byte_in_any_artifact_and_a_removed_batch() {
    use mailnotary::archive::keys;
    let data = tempfile::tempdir().unwrap();
    for path in ["sample-mails/dispute/01-rfq.eml", "sample-mails/dispute"] {
        assert_eq!(
            mailnotary(data.path(), &["ingest", path]).status.code(),
            Some(0)
        );
    }
    let clean = mailnotary(data.path(), &["check"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
    let id = {
        let archive = Archive::open(data.path(), &StoreOptions::default()).unwrap();
        archive
            .find(&Query {
                selector: Selector::MessageId(
                    "<202603161448057719204@huarui-precision.example>".into(),
                ),
                since: None,
                until: None,
            })
            .unwrap()
            .remove(0)
            .id()
            .unwrap()
    };
    for (what, key) in [
        ("receipt", keys::receipt(&id)),
        ("evidence record", keys::evidence(&id)),
        ("token", keys::batch_token(2)),
    ] {
        let original = flip(data.path(), key.clone());
        let out = mailnotary(data.path(), &["check"]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("problem:"),
            "{what}: {}",
            stdout(&out)
        );
        restore(data.path(), key, original);
    }
    assert_eq!(mailnotary(data.path(), &["check"]).status.code(), Some(0));

    // A batch taken out of the chain.
    let archive = Archive::open(data.path(), &StoreOptions::default()).unwrap();
    archive
        .store()
        .write(|txn| -> Result<(), mailnotary::store::StoreError> {
            txn.delete(keys::batch(1));
            Ok(())
        })
        .unwrap();
    drop(archive);
    let out = mailnotary(data.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("batch 1: missing from the chain"),
        "{}",
        stdout(&out)
    );
}
