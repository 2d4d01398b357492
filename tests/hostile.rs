// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Hostile input through `ingest` and through SMTP: generated extremes (a
//! 50 MB attachment, 10,000 MIME parts, a 1 MB header line, multiparts
//! nested 1,000 deep, NUL bytes, invalid UTF-8 everywhere). Each one is
//! stored with the SHA-256 of exactly its bytes, or refused with a reason;
//! nothing panics, and the daemon's memory stays within a bound. Then every
//! message of `sample-mails/` and of `../shared/corpus/` (when it is beside
//! the repository) through SMTP; `tests/ingest_cli.rs` takes the same mail
//! through `ingest`.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, mailnotary, python_json, root, shared_corpus, stderr, stdout};
use sha2::{Digest, Sha256};

fn head(subject: &str, id: &str) -> String {
    format!(
        "From: Mallory <mallory@evil.example>\r\nTo: archive@localhost\r\n\
         Subject: {subject}\r\nDate: Mon, 16 Mar 2026 14:48:05 +0800\r\n\
         Message-ID: <{id}@evil.example>\r\nMIME-Version: 1.0\r\n"
    )
}

/// The extremes, as (name, bytes). Line ends are CRLF throughout, so that
/// the SMTP copies are the same bytes.
fn extremes() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    // A 50 MB attachment (base64, so the message is about 68 MB).
    let mut m = head("big attachment", "big").into_bytes();
    m.extend_from_slice(
        b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
          Content-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\n\
          Content-Type: application/octet-stream; name=\"big.bin\"\r\n\
          Content-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = [b'Q'; 76];
    for _ in 0..(50 * 1024 * 1024 / 57) {
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    out.push(("big-attachment", m));

    // 10,000 MIME parts.
    let mut m = head("ten thousand parts", "parts").into_bytes();
    m.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"p\"\r\n\r\n");
    for i in 0..10_000 {
        m.extend_from_slice(
            format!("--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"--p--\r\n");
    out.push(("parts-10000", m));

    // A 1 MB header line.
    let mut m = head(&"A".repeat(1024 * 1024), "long-header").into_bytes();
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbody\r\n");
    out.push(("header-1mb", m));

    // Multiparts nested 1,000 deep.
    let mut m = head("nested", "nested").into_bytes();
    for d in 0..1000 {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"n{d}\"\r\n\r\n--n{d}\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
    for d in (0..1000).rev() {
        m.extend_from_slice(format!("--n{d}--\r\n").as_bytes());
    }
    out.push(("nesting-1000", m));

    // NUL bytes in the header and the body.
    let mut m = head("nul\0in\0subject", "nul").into_bytes();
    m.extend_from_slice(b"X-Nul: a\0b\r\nContent-Type: text/plain\r\n\r\nbody\0with\0nuls\r\n");
    out.push(("nul-bytes", m));

    // Invalid UTF-8 everywhere: raw bytes in headers, a bad encoded word,
    // an unknown charset, a body that is not UTF-8.
    let mut m = b"From: \xff\xfe Mallory <mallory@evil.example>\r\nTo: archive@localhost\r\n\
        Subject: =?utf-8?b?/////w==?= \xc3\x28 =?x-unknown?q?=FF=FE?=\r\n\
        Message-ID: <bad-utf8@evil.example>\r\nMIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    m.extend_from_slice(b"\xed\xa0\x80 \xf8\x88\x80\x80\x80 \xc0\xaf\r\n");
    out.push(("invalid-utf8", m));
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The daemon's peak resident memory, from /proc, in MiB.
fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[test]
fn extremes_are_stored_exactly_or_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, PathBuf, String)> = extremes()
        .into_iter()
        .map(|(name, bytes)| {
            let path = dir.path().join(format!("{name}.eml"));
            std::fs::write(&path, &bytes).unwrap();
            (name.to_string(), path, sha256_hex(&bytes))
        })
        .collect();

    // Through ingest: every one stored, with the digest of its bytes.
    let data = dir.path().join("ingested");
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(|(_, p, _)| p.to_str().unwrap()));
    let out = mailnotary(&data, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let listed = mailnotary(&data, &["lookup", "--all", "--json"]);
    let messages: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    for (name, _, sha) in &files {
        let found = messages
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["raw_sha256"] == sha.as_str());
        let m = found.unwrap_or_else(|| panic!("{name} not stored with its digest"));
        assert_eq!(m["status"], "stamped", "{name}");
        if *name == "nesting-1000" {
            let anomalies = m["anomalies"].to_string();
            assert!(anomalies.contains("nesting-too-deep"), "{anomalies}");
        }
        if *name == "nul-bytes" {
            assert!(m["anomalies"].to_string().contains("nul-bytes"), "{m}");
        }
    }
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // Through SMTP: each one 250 with its receipt id and its exact digest,
    // or refused with a reason (the attachment is over the 50 MiB limit).
    let daemon = Daemon::start(&dir.path().join("smtp"), &[]);
    let paths: Vec<String> = files
        .iter()
        .map(|(_, p, _)| p.display().to_string())
        .collect();
    let mut args = vec!["--port".to_string(), daemon.smtp.port().to_string()];
    args.extend(paths);
    let sent = python_json("smtp_send.py", &args);
    for (reply, (name, _, sha)) in sent.as_array().unwrap().iter().zip(&files) {
        let code = reply["code"].as_u64().unwrap();
        let text = reply["reply"].as_str().unwrap_or_default();
        match code {
            250 => {
                assert_eq!(reply["sha256"], sha.as_str(), "{name}: the bytes sent");
                assert!(text.contains("receipt id"), "{name}: {text}");
            }
            552 => {
                assert_eq!(name, "big-attachment", "{name}: {text}");
                assert!(text.contains("larger than the limit"), "{text}");
            }
            _ => panic!("{name}: {code} {text}"),
        }
    }
    daemon.wait_stamped(std::time::Duration::from_secs(60));
    let health = daemon.health();
    assert_eq!(health["status"], "ok");
    // Memory stays bounded: a 68 MB message is refused as it streams
    // past the limit, and nothing else is large.
    let peak = peak_rss_mib(daemon.child.id()).unwrap();
    eprintln!("the daemon's peak RSS: {peak} MiB");
    assert!(peak < 256, "the daemon's peak RSS was {peak} MiB");
    let log = daemon.log_text();
    assert!(!log.contains("panicked"), "{log}");
    let stored = Path::new(&daemon.data).to_path_buf();
    assert_eq!(daemon.stop().code(), Some(0));
    let out = mailnotary(&stored, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn every_sample_and_corpus_message_over_smtp_is_stored_with_its_digest() {
    // The messages as `ingest` finds them (an mbox gives several), each
    // written to its own file for the SMTP client.
    let mut paths = vec![root().join("sample-mails")];
    match shared_corpus() {
        Some(corpus) => paths.push(corpus),
        None => common::note_skip(
            "the ../shared/corpus half of the SMTP corpus test",
            "../shared/corpus is not beside the repository",
        ),
    }
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    mailnotary::source::walk(&paths, &mut |found| {
        if let mailnotary::source::Found::Message { bytes, .. } = found {
            let path = dir.path().join(format!("{:04}.eml", files.len()));
            std::fs::write(&path, bytes).unwrap();
            files.push(path.display().to_string());
        }
    });
    assert!(files.len() > 300, "only {} messages found", files.len());

    let daemon = Daemon::start(&dir.path().join("data"), &[]);
    let mut args = vec!["--port".to_string(), daemon.smtp.port().to_string()];
    args.extend(files.iter().cloned());
    let sent = python_json("smtp_send.py", &args);
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), files.len());
    daemon.wait_stamped(std::time::Duration::from_secs(120));
    let listed = mailnotary(&daemon.data, &["lookup", "--all", "--json"]);
    let stored: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    let digests: std::collections::HashSet<&str> = stored
        .iter()
        .filter_map(|m| m["raw_sha256"].as_str())
        .collect();
    // Every one is taken: the client makes line ends CRLF, and none is
    // over the size limit.
    for reply in sent {
        let code = reply["code"].as_u64().unwrap();
        assert_eq!(code, 250, "{}: {}", reply["file"], reply["reply"]);
        let sha = reply["sha256"].as_str().unwrap();
        assert!(
            digests.contains(sha),
            "{}: answered 250 but not stored with its digest",
            reply["file"]
        );
    }
    assert!(stored.iter().all(|m| m["status"] == "stamped"));
    eprintln!(
        "{} messages over SMTP, all answered 250 and stored with their digests ({} stored: \
         identical copies are one message with several sightings)",
        files.len(),
        stored.len()
    );
    let log = daemon.log_text();
    // The MIME parser's own panics are caught and logged as such (the
    // message is kept as unparseable); any other panic is a failure.
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked at")).collect();
    assert!(panics.is_empty(), "panics in the daemon's log: {panics:?}");
    let data = daemon.data.clone();
    assert_eq!(daemon.stop().code(), Some(0));
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
}
