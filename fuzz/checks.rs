// SPDX-License-Identifier: Apache-2.0 OR MIT
//! What each fuzz target does with one input, and what must hold after.
//!
//! Shared by the cargo-fuzz targets (nightly, coverage-guided) and by the
//! stable test suite (`tests/fuzz.rs`), which replays the committed
//! corpora and mutates seeds on every run.
#![allow(dead_code)]

use mailnotary::archive::verify::{Evidence, verify_with};
use mailnotary::receipt::content::ReceiptContent;
use mailnotary::signing::{Trust, read_certificates, unverified_content};
use sha2::{Digest, Sha256};

/// Installs, once, the panic filter the gateway installs at start: the
/// MIME parser's own panics (mail-parser 0.11 has some) are caught by the
/// analysis and the message is kept as "unparseable", so they are not
/// findings; every other panic still goes to the fuzzer's hook and aborts.
pub fn prepare() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(mailnotary::analysis::install_panic_filter);
}

/// A message: the MIME analysis and the canonical form, whose streaming
/// digest must equal the digest of the form written out.
pub fn mail(bytes: &[u8]) {
    prepare();
    let analysis = mailnotary::analysis::analyze(bytes);
    assert_eq!(analysis.size, bytes.len() as u64);
    let written: [u8; 32] = Sha256::digest(mailnotary::canonical::canonicalize(bytes)).into();
    assert_eq!(mailnotary::canonical::digest(bytes), written);
}

/// A receipt: the CMS SignedData reader and signature check, and the
/// receipt content decoder on the bytes and on the content they carry.
pub fn receipt(trust: &Trust, bytes: &[u8]) {
    let _ = ReceiptContent::from_der(bytes);
    if let Ok(verified) = trust.verify(bytes, None) {
        let _ = ReceiptContent::from_der(&verified.content);
    }
    if let Some(content) = unverified_content(bytes) {
        let _ = ReceiptContent::from_der(&content);
    }
}

/// An RFC 4998 evidence record and an RFC 3161 token: the decoders, the
/// reduced hash trees and each archive time-stamp's token.
pub fn evidence(bytes: &[u8]) {
    if let Ok(record) = mailnotary::ers::parse(bytes) {
        for stamp in record.archive_time_stamp_sequence.iter().flatten() {
            let _ = stamp.reduced();
            if let Ok(token) = stamp.token() {
                let _ = mailnotary::tsa::token::inspect(&token);
            }
        }
    }
    let _ = mailnotary::tsa::token::inspect(bytes);
    let _ = mailnotary::tsa::token::token_bytes(bytes);
}

/// Takes one part, after its four-byte big-endian length, off `rest`.
fn part<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let bytes = rest.get(4..4 + n)?;
    *rest = &rest[4 + n..];
    Some(bytes)
}

/// Joins a message, a receipt and an evidence record the way [`verify`]
/// splits them.
pub fn join(parts: [&[u8]; 3]) -> Vec<u8> {
    let mut joined = Vec::new();
    for p in parts {
        joined.extend_from_slice(&(p.len() as u32).to_be_bytes());
        joined.extend_from_slice(p);
    }
    joined
}

/// `verify` on a message, a receipt and an evidence record (see [`join`]).
/// A report that says "verified" must have passed every check.
pub fn verify(trust: &Trust, bytes: &[u8]) {
    prepare();
    let mut rest = bytes;
    let message = part(&mut rest);
    let receipt = part(&mut rest).unwrap_or_default();
    let record = part(&mut rest);
    let report = verify_with(
        message,
        &Evidence {
            receipt: receipt.to_vec(),
            record: record.map(<[u8]>::to_vec),
        },
        trust,
    );
    if report.verified {
        assert!(report.checks.iter().all(|c| c.ok), "{:?}", report.checks);
    }
}

/// An evidence bundle (zip): the reader, the manifest, the certificates it
/// names and the check of every message in it, as `verify BUNDLE.zip` does.
pub fn bundle(bytes: &[u8]) {
    prepare();
    let Ok(opened) = mailnotary::bundle::read_from(std::io::Cursor::new(bytes), "fuzz.zip") else {
        return;
    };
    let anchors = opened
        .trust_anchor
        .as_deref()
        .and_then(|pem| read_certificates(pem).ok())
        .unwrap_or_default();
    for extra in opened
        .tsa_trust_anchors
        .iter()
        .chain(&opened.tsa_certificates)
    {
        let _ = read_certificates(extra);
    }
    let trust = Trust::new(anchors);
    for entry in &opened.entries {
        if let Some(receipt) = &entry.receipt {
            let report = verify_with(
                entry.message.as_deref(),
                &Evidence {
                    receipt: receipt.clone(),
                    record: entry.record.clone(),
                },
                &trust,
            );
            if report.verified {
                assert!(report.checks.iter().all(|c| c.ok), "{:?}", report.checks);
            }
        }
    }
}

/// What an SMTP listener sent back: every line must be a reply line, three
/// digits and a space or a hyphen.
pub fn smtp_answer(answer: &[u8]) {
    for line in answer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && (line[3] == b' ' || line[3] == b'-'),
            "not a reply line: {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

/// The trust anchor built into the targets: the CA of the gateway that
/// made the seeds (`make-seeds.sh`).
pub fn fixture_trust() -> Trust {
    Trust::new(read_certificates(include_bytes!("fixtures/ca.cert.pem")).expect("the fixture CA"))
}
