// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Receipts: DER content that round-trips, signed as CMS that OpenSSL
//! (`openssl cms -verify`) accepts with the local CA.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{have, root, skip};
use mailnotary::archive::{Archive, Ingested};
use mailnotary::envelope::{Envelope, Source};
use mailnotary::receipt::content::{Issuer, ReceiptContent, ReceiptSource};
use mailnotary::store::StoreOptions;
use mailnotary::tsa::pki::LocalPki;

fn stored_record(dir: &std::path::Path) -> mailnotary::archive::MessageRecord {
    let archive = Archive::open(dir, &StoreOptions::default()).unwrap();
    let raw = std::fs::read(root().join("sample-mails/dispute/02-quotation.eml")).unwrap();
    let envelope = Envelope {
        received_at: 1_770_000_000_123,
        source: Source::Smtp {
            peer: "192.0.2.7:41234".into(),
            helo: "mx.huarui-precision.example".into(),
            mail_from: "liwei@huarui-precision.example".into(),
            rcpt_to: vec!["archive@localhost".into()],
            tls: Some("TLSv1.3 TLS13_AES_128_GCM_SHA256".into()),
        },
    };
    let Ingested::Stored(id) = archive.ingest(envelope, raw).unwrap() else {
        panic!("stored")
    };
    archive.message(&id).unwrap().unwrap()
}

#[test]
fn receipt_content_round_trips_and_carries_the_digests() {
    let dir = tempfile::tempdir().unwrap();
    let record = stored_record(dir.path());
    let issuer = Issuer {
        name: "gw".into(),
        organization: Some("Hanseatic Components GmbH".into()),
    };
    let content = ReceiptContent::for_record(&record, &issuer);
    let der = content.to_der().unwrap();
    let back = ReceiptContent::from_der(&der).unwrap();
    assert_eq!(back, content);
    assert_eq!(back.receipt_id, record.receipt_id);
    assert_eq!(&back.digests.raw[..], &record.digests.raw.0[..]);
    assert_eq!(&back.digests.canonical[..], &record.digests.canonical.0[..]);
    assert_eq!(back.digests.parts.len(), 2);
    assert_eq!(
        back.digests.parts[1].file_name.as_deref(),
        Some("报价单-Q-2026-118.pdf")
    );
    assert!(
        matches!(back.source, ReceiptSource::Smtp(ref s) if s.rcpt_to == ["archive@localhost"])
    );
    assert_eq!(back.received_at.timestamp_millis(), 1_770_000_000_123);
}

#[test]
fn openssl_verifies_a_receipt_and_returns_its_content() {
    if !have("openssl") {
        return skip(
            "openssl_verifies_a_receipt_and_returns_its_content",
            "openssl is missing",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let record = stored_record(dir.path());
    let pki = LocalPki::open_or_create(dir.path(), "gw").unwrap();
    let content = ReceiptContent::for_record(&record, &Issuer::default())
        .to_der()
        .unwrap();
    let receipt = mailnotary::receipt::sign(&content, &pki.receipt).unwrap();
    let path = dir.path().join("receipt.p7s");
    std::fs::write(&path, &receipt).unwrap();

    let out = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-binary", "-in"])
        .arg(&path)
        .arg("-CAfile")
        .arg(pki.ca_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, content, "OpenSSL returns the signed content");

    // A receipt checked against another CA is refused.
    let other = tempfile::tempdir().unwrap();
    let stranger = LocalPki::open_or_create(other.path(), "stranger").unwrap();
    let refused = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-binary", "-in"])
        .arg(&path)
        .arg("-CAfile")
        .arg(stranger.ca_path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
