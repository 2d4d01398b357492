// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The canonical digest absorbs what differs between two mailboxes' copies
//! of one message, and nothing a reader would notice.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

use mailnotary::analysis::analyze;
use mailnotary::canonical::{canonicalize, digest};

const BASE: &str = "From: Anna Keller <anna.keller@hanseatic-components.example>\r\n\
To: Li Wei <liwei@huarui-precision.example>\r\n\
Cc: Chen Meiling <meiling.chen@huarui-precision.example>\r\n\
Subject: PO 4500012291: unit price USD 1.85\r\n\
Date: Tue, 10 Feb 2026 16:40:27 +0100\r\n\
Message-ID: <po-4500012291@hanseatic-components.example>\r\n\
In-Reply-To: <q-2026-118@huarui-precision.example>\r\n\
References: <rfq-0207@hanseatic-components.example> <q-2026-118@huarui-precision.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Dear Mr Li,\r\n\
\r\n\
we order 20,000 pcs at USD 1.85 per unit, as quoted.\r\n\
Regards, Anna\r\n";

fn raw_digest(text: &str) -> [u8; 32] {
    analyze(text.as_bytes()).digests.raw.0
}

/// Asserts that `variant` matches BASE canonically but not byte for byte.
fn assert_same_canonical(case: &str, variant: &str) {
    assert_ne!(variant, BASE, "{case}: the variant must differ in bytes");
    assert_ne!(raw_digest(variant), raw_digest(BASE), "{case}: raw digests");
    assert_eq!(
        String::from_utf8_lossy(&canonicalize(variant.as_bytes())),
        String::from_utf8_lossy(&canonicalize(BASE.as_bytes())),
        "{case}: canonical forms"
    );
    assert_eq!(
        digest(variant.as_bytes()),
        digest(BASE.as_bytes()),
        "{case}"
    );
}

fn assert_different_canonical(case: &str, variant: &str) {
    assert_ne!(
        digest(variant.as_bytes()),
        digest(BASE.as_bytes()),
        "{case}"
    );
}

#[test]
fn transport_headers_are_outside_the_canonical_form() {
    let variant = format!(
        "Return-Path: <anna.keller@hanseatic-components.example>\r\n\
         Received: from mx1.huarui-precision.example (mx1 [192.0.2.10])\r\n\tby mail.example with ESMTPS; Tue, 10 Feb 2026 15:40:29 +0000\r\n\
         DKIM-Signature: v=1; a=rsa-sha256; d=hanseatic-components.example; s=s1;\r\n\tb=AAAA\r\n\
         X-Mailer: Thunderbird\r\n{BASE}"
    );
    assert_same_canonical("transport headers", &variant);
    let x_header_inside = BASE.replace("MIME-Version", "X-Spam-Score: 0.1\r\nMIME-Version");
    assert_same_canonical("an X- header in the middle", &x_header_inside);
}

#[test]
fn header_order_does_not_matter() {
    let mut lines: Vec<&str> = BASE.split("\r\n").collect();
    let blank = lines.iter().position(|l| l.is_empty()).unwrap();
    lines[..blank].reverse();
    assert_same_canonical("reversed header order", &lines.join("\r\n"));
}

#[test]
fn folding_does_not_matter() {
    let variant = BASE
        .replace(
            "Subject: PO 4500012291: unit price USD 1.85",
            "Subject: PO 4500012291:\r\n unit price USD 1.85",
        )
        .replace(
            "References: <rfq-0207@hanseatic-components.example> <q-2026",
            "References: <rfq-0207@hanseatic-components.example>\r\n\t<q-2026",
        );
    assert_same_canonical("refolded headers", &variant);
}

#[test]
fn header_name_case_does_not_matter() {
    let variant = BASE
        .replace("Subject:", "SUBJECT:")
        .replace("Message-ID:", "Message-Id:")
        .replace("Content-Type:", "content-type:");
    assert_same_canonical("header name case", &variant);
}

#[test]
fn whitespace_runs_do_not_matter() {
    let variant = BASE
        .replace("Subject: PO", "Subject:    PO")
        .replace("unit price", "unit \t price")
        .replace("Subject:", "Subject :")
        .replace("we order 20,000", "we  order\t20,000");
    assert_same_canonical("whitespace runs", &variant);
}

#[test]
fn lf_line_ends_match_crlf() {
    assert_same_canonical("LF line ends", &BASE.replace("\r\n", "\n"));
    // Mixed line ends, as after a careless edit.
    assert_same_canonical("mixed line ends", &BASE.replacen("\r\n", "\n", 4));
}

#[test]
fn trailing_whitespace_does_not_matter() {
    let variant = BASE
        .replace("Regards, Anna\r\n", "Regards, Anna  \t\r\n")
        .replace("Dear Mr Li,\r\n", "Dear Mr Li, \r\n")
        .replace("charset=utf-8\r\n", "charset=utf-8   \r\n");
    assert_same_canonical("trailing whitespace", &variant);
}

#[test]
fn trailing_blank_lines_do_not_matter() {
    assert_same_canonical("trailing blank lines", &format!("{BASE}\r\n\r\n\r\n"));
    assert_same_canonical("blank lines with spaces", &format!("{BASE}  \r\n\t\r\n"));
    let no_final_newline = BASE.strip_suffix("\r\n").unwrap();
    assert_same_canonical("no final line end", no_final_newline);
}

#[test]
fn one_character_in_the_body_changes_the_digest() {
    assert_different_canonical("price", &BASE.replace("USD 1.85 per", "USD 1.86 per"));
    assert_different_canonical("comma", &BASE.replace("20,000", "20.000"));
    assert_different_canonical("case", &BASE.replace("Regards", "regards"));
    assert_different_canonical(
        "an inner blank line",
        &BASE.replace("Dear Mr Li,\r\n\r\n", "Dear Mr Li,\r\n"),
    );
}

#[test]
fn one_character_in_any_selected_header_changes_the_digest() {
    let changes = [
        ("Anna Keller <anna", "Anna Kellet <anna"),
        ("To: Li Wei <liwei@", "To: Li Wei <liwe1@"),
        ("Cc: Chen", "Cc: Chan"),
        ("USD 1.85\r\n", "USD 1.86\r\n"),
        ("16:40:27", "16:40:28"),
        ("<po-4500012291@", "<po-4500012292@"),
        ("In-Reply-To: <q-2026-118", "In-Reply-To: <q-2026-119"),
        ("References: <rfq-0207", "References: <rfq-0208"),
        ("MIME-Version: 1.0", "MIME-Version: 1.1"),
        ("charset=utf-8", "charset=utf-9"),
        ("Encoding: 8bit", "Encoding: 7bit"),
    ];
    for (from, to) in changes {
        assert!(BASE.contains(from), "{from} is in the base message");
        assert_different_canonical(from, &BASE.replacen(from, to, 1));
    }
    // Sender and Reply-To are selected too: adding one changes the digest.
    for added in ["Sender: a@b.example", "Reply-To: a@b.example"] {
        assert_different_canonical(added, &format!("{added}\r\n{BASE}"));
    }
}

#[test]
fn a_removed_selected_header_changes_the_digest() {
    assert_different_canonical(
        "no Cc",
        &BASE.replace(
            "Cc: Chen Meiling <meiling.chen@huarui-precision.example>\r\n",
            "",
        ),
    );
}

#[test]
fn canonical_form_is_what_the_docs_say() {
    let form = String::from_utf8(canonicalize(BASE.as_bytes())).unwrap();
    assert!(form.starts_with("from:Anna Keller <anna.keller@hanseatic-components.example>\r\nto:"));
    assert!(form.contains("\r\nsubject:PO 4500012291: unit price USD 1.85\r\n"));
    assert!(form.contains("content-transfer-encoding:8bit\r\n\r\nDear Mr Li,\r\n\r\nwe order"));
    assert!(form.ends_with("Regards, Anna\r\n"));
}

/// The vectors in tests/data/canonical are the ones docs/formats.md points
/// to; another implementation can run the same files.
#[test]
fn published_test_vectors_match() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/canonical");
    let mut count = 0;
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    inputs.sort();
    for input in inputs {
        let raw = std::fs::read(&input).unwrap();
        let canonical = std::fs::read(input.with_extension("canonical")).unwrap();
        let sha = std::fs::read_to_string(input.with_extension("sha256")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&canonicalize(&raw)),
            String::from_utf8_lossy(&canonical),
            "{}",
            input.display()
        );
        assert_eq!(hex::encode(digest(&raw)), sha.trim(), "{}", input.display());
        count += 1;
    }
    assert!(count >= 8, "only {count} vectors");
}
