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
    bouncy_castle, bouncy_castle_missing, dispute_file, have, mailnotary, openssl_accepts_entry,
    skip, stderr, stdout,
};
use mailnotary::hashtree::root_from_reduced;
use sha2::{Digest, Sha256};

/// Exports the dispute thread of the archive in `data` to `zip`.
fn export_dispute(data: &Path, zip: &Path) -> std::process::Output {
    mailnotary(
        data,
        &[
            "export",
            "--thread",
            "<202603161448057719204@huarui-precision.example>",
            "--out",
            zip.to_str().unwrap(),
        ],
    )
}

/// Ingests the dispute thread in two runs, so that it spans two batches.
fn ingest_in_two_batches(data: &Path) {
    let first: Vec<String> = (1..=4).map(dispute_file).collect();
    let mut args = vec!["ingest"];
    args.extend(first.iter().map(String::as_str));
    assert_eq!(mailnotary(data, &args).status.code(), Some(0));
    assert_eq!(
        mailnotary(data, &["ingest", "sample-mails/dispute"])
            .status
            .code(),
        Some(0)
    );
}

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
    ingest_in_two_batches(data.path());

    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("dispute.zip");
    let out = export_dispute(data.path(), &zip);
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
        let content = std::fs::read(dir.join(m["receipt_content"].as_str().unwrap())).unwrap();

        // The root computed from the evidence record is the manifest's;
        // openssl cms -verify accepts the receipt and outputs exactly the
        // receipt content, and openssl ts -verify accepts the token for
        // that root.
        let record = std::fs::read(dir.join(m["evidence"].as_str().unwrap())).unwrap();
        let parsed = mailnotary::ers::parse(&record).unwrap();
        let reduced = parsed.archive_time_stamp_sequence[0][0].reduced().unwrap();
        let leaf: [u8; 32] = Sha256::digest(&content).into();
        let computed = hex::encode(root_from_reduced(&leaf, &reduced).unwrap());
        assert_eq!(m["root"], computed.as_str(), "{n}");
        openssl_accepts_entry(&dir, m, &computed, &ca);

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

/// The checks of a `verify --json` run that failed, by name and detail.
fn failed_checks(out: &std::process::Output) -> Vec<(String, String)> {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_against_a_bundle_or_a_receipt_names_each_failure() {
    let data = tempfile::tempdir().unwrap();
    let out = mailnotary(data.path(), &["ingest", "sample-mails/dispute"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("dispute.zip");
    let out = export_dispute(data.path(), &zip);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ca = data.path().join("keys/ca.cert.pem");
    let ca = ca.to_str().unwrap();
    let zip_arg = zip.to_str().unwrap();
    // A machine with no archive: only the bundle, the file and the CA.
    let nowhere = work.path().join("no-archive");
    let price_claim = dispute_file(5);
    let pdf = "sample-mails/dispute/attachments/报价单-Q-2026-118.pdf";

    let out = mailnotary(
        &nowhere,
        &[
            "verify",
            &price_claim,
            "--bundle",
            zip_arg,
            "--trust",
            ca,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = mailnotary(
        &nowhere,
        &["verify", pdf, "--bundle", zip_arg, "--trust", ca, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["matched"], "part");

    // Without --trust, the bundle's own CA is used and the output says
    // that this proves nothing until its fingerprint is confirmed.
    let out = mailnotary(&nowhere, &["verify", &price_claim, "--bundle", zip_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("taken from the bundle itself"));
    assert!(!nowhere.exists(), "verify creates no data directory");

    // The bundle as FILE: every message is checked, against its copy in
    // messages/ too.
    let out = mailnotary(&nowhere, &["verify", zip_arg, "--trust", ca, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let whole: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked = whole["messages"].as_array().unwrap();
    assert_eq!(checked.len(), 9);
    for m in checked {
        assert_eq!(m["verified"], true, "{m:#}");
        assert_eq!(m["matched"], "raw", "{m:#}");
    }
    // One flipped byte in one receipt of the zip: that message, and only
    // that one, fails, and says why.
    let damaged = work.path().join("damaged.zip");
    {
        let mut source = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
        let mut target = zip::ZipWriter::new(std::fs::File::create(&damaged).unwrap());
        for i in 0..source.len() {
            let mut member = source.by_index(i).unwrap();
            let name = member.name().unwrap().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut member, &mut bytes).unwrap();
            if name == "receipts/003.p7s" {
                let last = bytes.len() - 1;
                bytes[last] ^= 0x01;
            }
            target
                .start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut target, &bytes).unwrap();
        }
        target.finish().unwrap();
    }
    let out = mailnotary(
        &nowhere,
        &["verify", damaged.to_str().unwrap(), "--trust", ca],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("not verified: 1 of the 9 messages"), "{text}");
    let fails: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fails.len(), 1, "{text}");
    assert!(
        fails[0].starts_with("FAIL  003") && fails[0].contains("receipt signature"),
        "{text}"
    );

    // A file that is in no receipt of the bundle.
    let out = mailnotary(
        &nowhere,
        &[
            "verify",
            "README.md",
            "--bundle",
            zip_arg,
            "--trust",
            ca,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let failed = failed_checks(&out);
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .1
            .contains("does not match any receipt in the bundle"),
        "{failed:?}"
    );

    // Receipts and evidence records by hand, from the unzipped bundle.
    let dir = work.path().join("bundle");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    archive.extract(&dir).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let raw_05 = hex::encode(Sha256::digest(
        std::fs::read(common::root().join(&price_claim)).unwrap(),
    ));
    let messages = manifest["messages"].as_array().unwrap();
    let own = messages
        .iter()
        .find(|m| m["raw_sha256"] == raw_05.as_str())
        .unwrap();
    let file = |m: &serde_json::Value, key: &str| {
        dir.join(m[key].as_str().unwrap())
            .to_str()
            .unwrap()
            .to_string()
    };
    // Another message whose evidence record does not start from this
    // receipt's leaf: a sibling's record lists both leaves of their pair in
    // its first group, and so proves this receipt too, as RFC 4998 means
    // it to. (A leaf carried up alone appears in the other records' upper
    // groups, which prove nothing about it.)
    let own_leaf: [u8; 32] =
        Sha256::digest(std::fs::read(file(own, "receipt_content")).unwrap()).into();
    let other = messages
        .iter()
        .filter(|m| m["raw_sha256"] != raw_05.as_str())
        .find(|m| {
            let ers = mailnotary::ers::parse(&std::fs::read(file(m, "evidence")).unwrap()).unwrap();
            let reduced = ers.archive_time_stamp_sequence[0][0].reduced().unwrap();
            reduced
                .first()
                .is_none_or(|first| !first.contains(&own_leaf))
        })
        .unwrap();
    let by_hand = |receipt: &str, evidence: &str| {
        mailnotary(
            &nowhere,
            &[
                "verify",
                &price_claim,
                "--receipt",
                receipt,
                "--evidence",
                evidence,
                "--trust",
                ca,
                "--json",
            ],
        )
    };
    let out = by_hand(&file(own, "receipt"), &file(own, "evidence"));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The evidence record of another message.
    let out = by_hand(&file(own, "receipt"), &file(other, "evidence"));
    assert_eq!(out.status.code(), Some(1));
    let failed = failed_checks(&out);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "hash tree");
    assert!(
        failed[0]
            .1
            .contains("evidence record is for another message"),
        "{failed:?}"
    );

    // The other message's receipt: the content does not match it.
    let out = by_hand(&file(other, "receipt"), &file(other, "evidence"));
    assert_eq!(out.status.code(), Some(1));
    let failed = failed_checks(&out);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "match");
    assert!(
        failed[0].1.contains("the content does not match receipt"),
        "{failed:?}"
    );

    // One flipped byte in the receipt's signature.
    let mut flipped = std::fs::read(file(own, "receipt")).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let flipped_path = work.path().join("flipped.p7s");
    std::fs::write(&flipped_path, &flipped).unwrap();
    let out = by_hand(flipped_path.to_str().unwrap(), &file(own, "evidence"));
    assert_eq!(out.status.code(), Some(1));
    let failed = failed_checks(&out);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "receipt signature");
    assert!(
        failed[0].1.contains("signature does not verify"),
        "{failed:?}"
    );

    // A receipt given without its evidence record, on a machine with no
    // archive to find it in.
    let out = mailnotary(
        &nowhere,
        &[
            "verify",
            &price_claim,
            "--receipt",
            &file(own, "receipt"),
            "--trust",
            ca,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("no evidence record"),
        "{}",
        stdout(&out)
    );
}

/// The shell blocks of a VERIFY.md, each with the heading above it.
fn verify_steps(text: &str) -> Vec<(String, String)> {
    let mut steps = Vec::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match &mut block {
            Some(script) if line == "```" => {
                steps.push((heading.clone(), std::mem::take(script)));
                block = None;
            }
            Some(script) => {
                script.push_str(line);
                script.push('\n');
            }
            None if line == "```sh" => block = Some(String::new()),
            None if line.starts_with('#') => heading = line.trim_start_matches('#').trim().into(),
            None => {}
        }
    }
    steps
}

/// Runs every step of the VERIFY.md in `dir` with bash, as written; returns
/// the headings of the steps that failed.
fn failing_steps(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("VERIFY.md")).unwrap();
    let steps = verify_steps(&text);
    assert!(steps.len() > 20, "{text}");
    steps
        .into_iter()
        .filter(|(_, script)| {
            !Command::new("bash")
                .arg("-c")
                .arg(script)
                .current_dir(dir)
                .output()
                .unwrap()
                .status
                .success()
        })
        .map(|(heading, _)| heading)
        .collect()
}

fn flip_last_byte(path: &Path, offset_from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - offset_from_end;
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn verify_md_runs_as_written_and_names_the_step_that_fails() {
    let test = "verify_md_runs_as_written_and_names_the_step_that_fails";
    if !have("openssl") || !have("bash") || !have("sha256sum") {
        return skip(test, "needs openssl, bash and sha256sum");
    }
    if let Some(why) = bouncy_castle_missing() {
        return skip(test, &why);
    }
    let data = tempfile::tempdir().unwrap();
    ingest_in_two_batches(data.path());
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("dispute.zip");
    let out = export_dispute(data.path(), &zip);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // An empty folder with the bundle's files and nothing else.
    let dir = work.path().join("unzipped");
    zip::ZipArchive::new(std::fs::File::open(&zip).unwrap())
        .unwrap()
        .extract(&dir)
        .unwrap();

    assert_eq!(failing_steps(&dir), Vec::<String>::new());

    // One byte of message 003 changed: its step 2, and only that, fails.
    flip_last_byte(&dir.join("messages/003.eml"), 10);
    let failed = failing_steps(&dir);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("Message 003, step 2"), "{failed:?}");
    flip_last_byte(&dir.join("messages/003.eml"), 10);

    // One byte of receipt 004's signature: its step 1 fails.
    flip_last_byte(&dir.join("receipts/004.p7s"), 1);
    let failed = failing_steps(&dir);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].starts_with("Message 004, step 1"), "{failed:?}");
    flip_last_byte(&dir.join("receipts/004.p7s"), 1);

    // One byte of an evidence record: step 3 of that message fails.
    flip_last_byte(&dir.join("evidence/006.ers"), 40);
    let failed = failing_steps(&dir);
    assert!(
        failed.iter().any(|f| f.starts_with("Message 006, step 3")),
        "{failed:?}"
    );
    assert!(
        failed.iter().all(|f| f.starts_with("Message 006")),
        "{failed:?}"
    );

    // The report: every message, in both languages, no script.
    let report = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for m in manifest["messages"].as_array().unwrap() {
        assert!(
            report.contains(m["raw_sha256"].as_str().unwrap()),
            "{}",
            m["n"]
        );
        assert!(report.contains(m["receipt_id"].as_str().unwrap()));
    }
    for label in [
        "主题",
        "Subject",
        "时间线",
        "Timeline",
        "缺失的邮件",
        "Gaps",
    ] {
        assert!(report.contains(label), "{label}");
    }
    assert!(!report.contains("<script"));
    assert!(report.contains("<svg"));
}
