// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Part digests: what a mail client saves, checked against the saved files
//! themselves and against Python's email package, an independent MIME
//! implementation.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{have, python_json, root, skip};
use mailnotary::analysis::{Sha256Digest, analyze};

#[test]
fn attachment_digests_equal_sha256_of_the_saved_files() {
    let dispute = root().join("sample-mails/dispute");
    for (message, file) in [
        ("02-quotation.eml", "报价单-Q-2026-118.pdf"),
        ("06-invoice.eml", "发票明细-INV-HR-2026-0412.csv"),
    ] {
        let analysis = analyze(&std::fs::read(dispute.join(message)).unwrap());
        let saved = std::fs::read(dispute.join("attachments").join(file)).unwrap();
        let part = analysis
            .digests
            .parts
            .iter()
            .find(|p| p.filename.as_deref() == Some(file))
            .unwrap_or_else(|| panic!("{message} has no part named {file}"));
        assert_eq!(part.sha256, Sha256Digest::of(&saved), "{file}");
        assert_eq!(part.size, saved.len() as u64);

        // And the same as the system's sha256sum prints for the file.
        let out = Command::new("sha256sum")
            .arg(dispute.join("attachments").join(file))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            printed.split_whitespace().next(),
            Some(part.sha256.to_string().as_str())
        );
    }
}

/// Well-formed messages whose parts Python decodes the same way. Malformed
/// ones are left out on purpose: two parsers may cut a broken boundary in
/// different places, and both answers are defensible.
fn oracle_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("sample-mails/dispute"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    for name in [
        "cpython-test-email/msg_12a.txt",
        "cpython-test-email/msg_44.txt",
        "mimekit/messages/japanese.txt",
        "mimekit/messages/multipart-digest.txt",
        "mimekit/messages/epilogue.txt",
        "stalwart-mail-parser/thirdparty/004.eml",
        "stalwart-mail-parser/thirdparty/008.eml",
    ] {
        let path = root().join("sample-mails/corpus").join(name);
        if path.exists() {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn part_digests_agree_with_pythons_email_package() {
    if !have("python3") {
        return skip(
            "part_digests_agree_with_pythons_email_package",
            "python3 is missing",
        );
    }
    let files = oracle_files();
    let oracle = python_json("parts_oracle.py", &files);

    for file in &files {
        let theirs = oracle[file.display().to_string()].as_array().unwrap();
        let analysis = analyze(&std::fs::read(file).unwrap());
        let ours: Vec<_> = analysis
            .digests
            .parts
            .iter()
            .filter(|p| p.content_type != "message/rfc822")
            .collect();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{}: number of leaf parts",
            file.display()
        );
        for (o, t) in ours.iter().zip(theirs) {
            let ours_hex = o.sha256.to_string();
            let same = t["sha256"] == ours_hex.as_str()
                || (o.content_type.starts_with("text/") && t["sha256_crlf"] == ours_hex.as_str());
            assert!(
                same,
                "{} part {}: ours {ours_hex}, Python {t}",
                file.display(),
                o.path
            );
            assert_eq!(
                t["content_type"],
                o.content_type.as_str(),
                "{}",
                file.display()
            );
        }
    }
}
