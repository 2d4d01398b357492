// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Ingest throughput with DKIM checks on and off, on the same signed
//! messages in the same run.
//!
//! Signs N messages (default 2,000: half RSA-2048 relaxed/simple, half
//! Ed25519) with Python's dkimpy (`tests/support/dkim_sign.py`), serves the
//! two key records from a private dnsmasq on a loopback port, then ingests
//! the messages from 8 threads into a fresh store twice: without a DKIM
//! verifier, and with one that fetches the keys from that dnsmasq (cached
//! for their TTL after the first lookup, as in production). Also measures
//! the check alone, one thread, without the store.
//!
//! Needs python3 with dkimpy and PyNaCl, openssl and dnsmasq (the test
//! command installs them). Run with `cargo bench --bench dkim`;
//! `MAILNOTARY_BENCH_MESSAGES` changes N.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mailnotary::archive::Archive;
use mailnotary::config::DnsConfig;
use mailnotary::dkim::Verifier;
use mailnotary::envelope::{Envelope, Source};
use mailnotary::store::StoreOptions;

#[path = "../tests/common/dns.rs"]
mod dns;

fn message(i: usize) -> String {
    let mut body = String::new();
    for line in 0..40 {
        body.push_str(&format!(
            "Line {line} of quotation {i}: part HR-{i:05} at USD 41.50 per unit, FOB Ningbo.\r\n"
        ));
    }
    format!(
        "From: Sales <sales@huarui.example>\r\nTo: Buyer <buyer@corp.example>\r\n\
         Subject: Quotation {i}\r\nDate: Mon, 16 Mar 2026 14:48:05 +0800\r\n\
         Message-ID: <{i}.bench@huarui.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
}

/// Signs messages `range` with a new key; returns the record (name, text).
fn sign(dir: &Path, selector: &str, key: &str, range: std::ops::Range<usize>) -> (String, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("tests/support/dkim_sign.py")
        .args([
            "--domain",
            "huarui.example",
            "--selector",
            selector,
            "--key",
            key,
        ])
        .args(["--canon", "relaxed/simple", "--keydir"])
        .arg(dir.join(format!("keys-{selector}")));
    for i in range {
        let plain = dir.join(format!("{i}.plain"));
        std::fs::write(&plain, message(i)).expect("write");
        cmd.arg(&plain).arg(dir.join(format!("{i}.eml")));
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "dkim_sign.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (
        v["name"].as_str().expect("name").to_string(),
        v["record"].as_str().expect("record").to_string(),
    )
}

/// Ingests `messages` from 8 threads into a new archive; messages/s.
fn ingest(dir: &Path, messages: &[Vec<u8>], verifier: Option<Verifier>) -> (f64, Archive) {
    let archive = Archive::open(dir, &StoreOptions::default()).expect("the archive opens");
    if let Some(v) = verifier {
        archive.set_dkim_verifier(std::sync::Arc::new(v));
    }
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let archive = &archive;
            scope.spawn(move || {
                for i in (t..messages.len()).step_by(8) {
                    let envelope = Envelope {
                        received_at: mailnotary::envelope::now_millis(),
                        source: Source::Import {
                            path: format!("bench/{i}.eml"),
                            mbox_index: None,
                        },
                    };
                    archive
                        .ingest(envelope, messages[i].clone())
                        .expect("ingest");
                }
            });
        }
    });
    (
        messages.len() as f64 / start.elapsed().as_secs_f64().max(1e-9),
        archive,
    )
}

fn main() {
    let count: usize = std::env::var("MAILNOTARY_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
        .max(2);
    let work = tempfile::tempdir().expect("a temporary directory");
    let dir = work.path();
    let half = count / 2;
    let rsa = sign(dir, "rsa", "rsa", 0..half);
    let ed = sign(dir, "ed", "ed25519", half..count);
    let mut dns = match dns::DnsServer::launch(dir, &[rsa, ed]) {
        Ok(dns) => dns,
        Err(why) => {
            eprintln!("{why}: nothing measured");
            return;
        }
    };
    let messages: Vec<Vec<u8>> = (0..count)
        .map(|i| std::fs::read(dir.join(format!("{i}.eml"))).expect("signed message"))
        .collect();
    let config = DnsConfig {
        nameservers: vec![dns.address()],
        timeout_ms: 2000,
    };

    // The check alone, one thread (keys cached after the first message).
    let verifier = Verifier::new(&config).expect("verifier");
    let start = Instant::now();
    let mut passed = 0;
    for m in &messages {
        let report = verifier.check(m);
        passed += report
            .signatures
            .iter()
            .filter(|v| v.result == "pass")
            .count();
    }
    let check_rate = count as f64 / start.elapsed().as_secs_f64();
    assert_eq!(passed, count, "every signature passes");

    let (off, _) = ingest(&dir.join("off"), &messages, None);
    let (on, archive) = ingest(&dir.join("on"), &messages, Some(verifier));
    dns.stop();
    // The checked run really checked.
    let all = mailnotary::archive::query::Query {
        selector: mailnotary::archive::query::Selector::All,
        since: None,
        until: None,
    };
    let checked = archive
        .find(&all)
        .map(|all| all.iter().filter(|r| r.dkim.is_some()).count())
        .unwrap_or(0);

    println!(
        "messages: {count} ({half} RSA-2048, {} Ed25519), about 3 KB each, signed by dkimpy",
        count - half
    );
    println!("DKIM check alone (1 thread):   {check_rate:.0} msg/s");
    println!("ingest, DKIM off (8 threads):  {off:.0} msg/s");
    println!("ingest, DKIM on  (8 threads):  {on:.0} msg/s ({checked} messages with results)");
    println!("on / off:                      {:.2}", on / off);
}
