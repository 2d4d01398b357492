// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Stamping throughput: 10,000 messages through ingest and one stamping
//! pass with the built-in TSA, beside OpenSSL's per-message pipeline
//! (`openssl ts -query | openssl ts -reply`) measured in the same run.
//!
//! Prints: ingest messages/s; how many TSA requests the stamper made (one
//! per batch is the promise); receipts signed and evidence written per
//! second; `verify` of stored messages per second (every signature, tree
//! and token checked); and the OpenSSL pipeline's messages/s over a
//! sample, with the ratio of the two stamping rates.
//!
//! Run with `cargo bench --bench stamp`. `MAILNOTARY_BENCH_MESSAGES` sets
//! the count (default 10,000); `MAILNOTARY_BENCH_OPENSSL` the OpenSSL sample
//! size (default 200).

use std::cell::Cell;
use std::process::{Command, Stdio};
use std::time::Instant;

use der::DecodePem;
use mailnotary::archive::Archive;
use mailnotary::archive::evidence::{ReceiptSigner, Stamper};
use mailnotary::envelope::{Envelope, Source};
use mailnotary::hashtree::Hash;
use mailnotary::receipt::content::Issuer;
use mailnotary::store::StoreOptions;
use mailnotary::tsa::Tsa;
use mailnotary::tsa::pki::LocalPki;

/// Counts the requests that reach the TSA.
struct Counting<'a> {
    tsa: &'a Tsa,
    requests: Cell<u64>,
}

impl Stamper for Counting<'_> {
    fn name(&self) -> String {
        "built-in".into()
    }

    fn stamp(&self, digest: &Hash) -> Result<Vec<u8>, String> {
        self.requests.set(self.requests.get() + 1);
        Stamper::stamp(self.tsa, digest)
    }
}

fn message(i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Li Wei <liwei@huarui-precision.example>\r\n\
         To: Anna Keller <anna.keller@hanseatic-components.example>\r\n\
         Subject: Order {i} price confirmation\r\n\
         Date: Mon, 16 Mar 2026 14:48:05 +0800\r\n\
         Message-ID: <{i}.stamp-bench@huarui-precision.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
    );
    for line in 0..25 {
        m += &format!("Line {line} of order {i}: unit price USD 1.85, quantity 20000.\r\n");
    }
    m.into_bytes()
}

fn rate(count: u64, secs: f64) -> f64 {
    count as f64 / secs.max(1e-9)
}

fn main() {
    let count: usize = std::env::var("MAILNOTARY_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let sample: usize = std::env::var("MAILNOTARY_BENCH_OPENSSL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let archive = Archive::open(dir.path(), &StoreOptions::default()).expect("the archive opens");
    let pki = LocalPki::open_or_create(dir.path(), "bench").expect("keys");
    let signer = ReceiptSigner {
        issuer: Issuer::default(),
        key: pki.receipt.clone(),
    };
    let ca_pem = std::fs::read(pki.ca_path()).expect("the CA file");
    let anchors = vec![x509_cert::Certificate::from_pem(&ca_pem).expect("the CA")];
    let tsa = Tsa::new(pki);

    // Ingest from 8 threads, so that the store's group commit works as it
    // does under concurrent sessions.
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let archive = &archive;
            scope.spawn(move || {
                for i in (t..count).step_by(8) {
                    let envelope = Envelope {
                        received_at: mailnotary::envelope::now_millis(),
                        source: Source::Import {
                            path: format!("bench/{i}.eml"),
                            mbox_index: None,
                        },
                    };
                    archive.ingest(envelope, message(i)).expect("ingest");
                }
            });
        }
    });
    let ingest_secs = start.elapsed().as_secs_f64();

    let counting = Counting {
        tsa: &tsa,
        requests: Cell::new(0),
    };
    let start = Instant::now();
    let mut stamped = 0;
    let mut batches = 0;
    while let Some(summary) = archive
        .stamp_pending(&signer, &counting, count)
        .expect("stamping")
    {
        stamped += summary.batch.messages;
        batches += 1;
    }
    let stamp_secs = start.elapsed().as_secs_f64();

    let verify_count = count;
    let trust = mailnotary::signing::Trust::new(anchors.clone());
    let start = Instant::now();
    for i in 0..verify_count {
        let report = archive.verify_file(&message(i), &trust).expect("verify");
        assert!(report.verified, "message {i} verifies");
    }
    let verify_secs = start.elapsed().as_secs_f64();

    let openssl = openssl_pipeline(dir.path(), sample);

    let ours = rate(stamped, stamp_secs);
    println!("messages:                 {count}");
    println!(
        "ingest (8 threads):       {:.0} msg/s",
        rate(count as u64, ingest_secs)
    );
    println!(
        "stamping:                 {stamped} messages in {batches} batch(es), {} TSA request(s)",
        counting.requests.get()
    );
    println!("receipts + evidence:      {ours:.0} msg/s ({stamp_secs:.2} s)");
    println!(
        "verify (full chain):      {:.0} msg/s over {verify_count} messages",
        rate(verify_count as u64, verify_secs)
    );
    match openssl {
        Some(per_second) => println!(
            "openssl ts -query|-reply: {per_second:.1} msg/s over {sample} messages; ratio {:.0}x",
            ours / per_second
        ),
        None => println!("openssl ts -query|-reply: not measured (openssl not found)"),
    }
}

/// Messages per second of `openssl ts -query | openssl ts -reply`, one
/// message at a time, signing with the same kind of key.
fn openssl_pipeline(dir: &std::path::Path, sample: usize) -> Option<f64> {
    let keys = dir.join("keys");
    let config = dir.join("openssl-tsa.cnf");
    std::fs::write(
        &config,
        format!(
            "[ tsa ]\ndefault_tsa = bench\n[ bench ]\ndir = {d}\nserial = {d}/serial\n\
             signer_cert = {k}/tsa.cert.pem\nsigner_key = {k}/tsa.key.pem\n\
             signer_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\n\
             ess_cert_id_alg = sha256\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
             ess_cert_id_chain = no\n",
            d = dir.display(),
            k = keys.display()
        ),
    )
    .ok()?;
    std::fs::write(dir.join("serial"), "01\n").ok()?;
    let data = dir.join("data.txt");
    let start = Instant::now();
    for i in 0..sample {
        std::fs::write(&data, message(i)).ok()?;
        let query = Command::new("openssl")
            .args(["ts", "-query", "-sha256", "-cert", "-data"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let reply = Command::new("openssl")
            .args(["ts", "-reply", "-queryfile", "/dev/stdin", "-config"])
            .arg(&config)
            .stdin(query.stdout?)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !reply.success() {
            return None;
        }
    }
    Some(rate(sample as u64, start.elapsed().as_secs_f64()))
}
