// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mailnotary export` bundles, checked the way a stranger would: unzipped
//! with Python's zipfile, then OpenSSL for receipts and tokens and Bouncy
//! Castle for the evidence records, with nothing but the bundle's files.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    bouncy_castle, bouncy_castle_missing, dispute_file, have, mailnotary, skip, stderr, stdout,
};
use mailnotary::hashtree::root_from_reduced;
use sha2::{Digest, Sha256};

fn bc_accepts(record: &Path, data: &Path) -> bool {
    bouncy_castle("BcEvidenceRecord.java", &[record, data])
        .status
        .success()
}

#[test]
fn a_bundle_checks_out_with_openssl_and_bouncy_castle_alone() {
    let test = "a_bundle_checks_out_with_openssl_and_bouncy_castle_alone";
    if !have("openssl") || !have("python3") || !have("java") {
        return skip(test, "needs openssl, python3 and java");
    }
    let data = tempfile::tempdir().unwrap();
    // Two ingests, so the thread spans two batches.
    let first: Vec<String> = (1..=4).map(dispute_file).collect();
    let mut args = vec!["ingest"];
    args.extend(first.iter().map(String::as_str));
    assert_eq!(mailnotary(data.path(), &args).status.code(), Some(0));
    assert_eq!(
        mailnotary(data.path(), &["ingest", "sample-mails/dispute"])
            .status
            .code(),
        Some(0)
    );

    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("dispute.zip");
    let out = mailnotary(
        data.path(),
        &[
            "export",
            "--thread",
            "<202603161448057719204@huarui-precision.example>",
            "--out",
            zip.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("9 messages, 2 batches"),
        "{}",
        stdout(&out)
    );

    let dir = work.path().join("bundle");
    let unzip = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(unzip.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let ca = dir.join("certs/ca.cert.pem");
    let messages = manifest["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 9);

    for m in messages {
        let n = m["n"].as_str().unwrap();
        let receipt = dir.join(m["receipt"].as_str().unwrap());
        let content_path = dir.join(m["receipt_content"].as_str().unwrap());
        let content = std::fs::read(&content_path).unwrap();

        // openssl cms -verify accepts the receipt and outputs exactly the
        // receipt content.
        let cms = Command::new("openssl")
            .args(["cms", "-verify", "-inform", "DER", "-binary", "-in"])
            .arg(&receipt)
            .arg("-CAfile")
            .arg(&ca)
            .output()
            .unwrap();
        assert!(
            cms.status.success(),
            "{n}: {}",
            String::from_utf8_lossy(&cms.stderr)
        );
        assert_eq!(cms.stdout, content, "{n}");

        // The root computed from the evidence record is the manifest's,
        // and openssl ts -verify accepts the token for it.
        let record = std::fs::read(dir.join(m["evidence"].as_str().unwrap())).unwrap();
        let parsed = mailnotary::ers::parse(&record).unwrap();
        let reduced = parsed.archive_time_stamp_sequence[0][0].reduced().unwrap();
        let leaf: [u8; 32] = Sha256::digest(&content).into();
        let computed = hex::encode(root_from_reduced(&leaf, &reduced).unwrap());
        assert_eq!(m["root"], computed.as_str(), "{n}");
        let ts = Command::new("openssl")
            .args(["ts", "-verify", "-token_in", "-digest", &computed, "-in"])
            .arg(dir.join(m["token"].as_str().unwrap()))
            .arg("-CAfile")
            .arg(&ca)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&ts.stdout).contains("Verification: OK"),
            "{n}: {}",
            String::from_utf8_lossy(&ts.stderr)
        );

        // The message itself, kept in archive mode, has the recorded digest.
        let eml = std::fs::read(dir.join(m["message"].as_str().unwrap())).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&eml)),
            m["raw_sha256"].as_str().unwrap()
        );
    }

    // Bouncy Castle: every record with its receipt content, and a changed
    // byte refused.
    if let Some(why) = bouncy_castle_missing() {
        skip(test, &format!("Bouncy Castle part: {why}"));
    } else {
        let first = &messages[0];
        let record = dir.join(first["evidence"].as_str().unwrap());
        let content = dir.join(first["receipt_content"].as_str().unwrap());
        assert!(bc_accepts(&record, &content));
        let mut changed = std::fs::read(&content).unwrap();
        let at = changed.len() / 2;
        changed[at] ^= 0x01;
        let changed_path = work.path().join("changed.der");
        std::fs::write(&changed_path, changed).unwrap();
        assert!(!bc_accepts(&record, &changed_path));
    }
}

#[test]
fn exporting_nothing_says_so() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(
        mailnotary(data.path(), &["ingest", "sample-mails/dispute/01-rfq.eml"])
            .status
            .code(),
        Some(0)
    );
    let out = mailnotary(
        data.path(),
        &[
            "export",
            "--message-id",
            "<nobody@nowhere>",
            "--out",
            "/tmp/never.zip",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nothing exported"));
    assert!(!Path::new("/tmp/never.zip").exists());
}
