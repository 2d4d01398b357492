// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Mutation fuzzing on the stable toolchain: seeded, repeatable runs that
//! mutate real inputs (the mail in `sample-mails/`, real receipts,
//! evidence records and timestamp tokens made by the gateway, the public
//! TSAs' tokens, DKIM-signed mail) and feed them to every parser that reads
//! what strangers send: the MIME analysis and the canonical form, the
//! receipt content decoder, the evidence record decoder, the token reader,
//! `verify` with a receipt and evidence record, the DKIM verifier, and the
//! SMTP listener over TCP. A panic anywhere fails the test and prints the
//! seed and the input, which then becomes a regression case.
//!
//! `MAILNOTARY_FUZZ_ROUNDS` scales the runs (default 1: a few seconds per
//! target in a debug build; the notes record longer runs).
//!
//! What each target does with an input, and what must hold after, is
//! written once in `fuzz/checks.rs` and shared with the coverage-guided
//! cargo-fuzz targets under `fuzz/` (nightly). Their committed corpora are
//! replayed here on every run, so an input they found stays fixed on the
//! stable toolchain too.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

#[path = "../fuzz/checks.rs"]
mod checks;
mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, dispute_file, mailnotary, root};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn rounds() -> usize {
    std::env::var("MAILNOTARY_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Bytes that parsers care about, inserted more often than noise.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"--",
    b"boundary=\"",
    b"Content-Type: multipart/mixed; boundary=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"=?utf-8?b?",
    b"?=",
    b"\0",
    b"\xff\xfe",
    b"\x30\x82\xff\xff",
    b"\x30\x80",
    b"\x02\x01",
    b"\x04\x20",
    b"DKIM-Signature: v=1; a=rsa-sha256; d=x; s=y; bh=; b=;\r\n",
    b" ",
    b"\t",
];

/// One random change (or a few) of `input`, possibly spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                out.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + rng.below(256)).min(len);
                let chunk: Vec<u8> = out[a..b].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                let a = rng.below(other.len());
                let b = (a + rng.below(512)).min(other.len());
                let at = rng.below(len + 1);
                out.splice(at..at, other[a..b].iter().copied());
            }
            6 if len > 0 => out.truncate(rng.below(len)),
            _ => {
                let at = rng.below(len + 1);
                let noise: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, noise);
            }
        }
    }
    out
}

/// Runs `target` on `iterations` mutations of the seeds; a panic reports
/// the seed, the iteration and the input's first bytes.
fn fuzz(name: &str, seeds: &[Vec<u8>], iterations: usize, target: &dyn Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    for seed in seeds {
        target(seed);
    }
    let mut rng = Rng(0x6d61_696c_6e6f_7461 ^ name.len() as u64);
    for i in 0..iterations * rounds() {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, a, b);
        if std::env::var_os("MAILNOTARY_FUZZ_TRACE").is_some() {
            let path = std::env::temp_dir().join(format!("mailnotary-fuzz-{name}-current.bin"));
            std::fs::write(&path, &input).unwrap();
            eprintln!("{name} {i} {}", input.len());
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("mailnotary-fuzz-{name}-{i}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: iteration {i} panicked; the input is saved in {}",
                path.display()
            );
        }
    }
    eprintln!(
        "fuzz {name}: {} mutated inputs from {} seeds, no panic",
        iterations * rounds(),
        seeds.len()
    );
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn mail_seeds() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    files_under(&root().join("sample-mails"), &mut paths);
    paths.sort();
    paths
        .iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "eml" || e == "txt" || e == "msg")
        })
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| b.len() < 256 * 1024)
        .collect()
}

/// Runs `f` on a thread and waits for it, so that a regression to an
/// endless walk fails the test instead of hanging it.
fn within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the check did not finish within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the check panicked"),
    }
}

#[test]
fn inputs_found_by_fuzzing_stay_fixed() {
    let dir = root().join("tests/data/fuzz");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "eml") {
            let bytes = std::fs::read(&path).unwrap();
            within(std::time::Duration::from_secs(60), move || {
                checks::mail(&bytes)
            });
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn mime_analysis_and_the_canonical_form_survive_mutated_mail() {
    let seeds = mail_seeds();
    assert!(seeds.len() > 50, "{}", seeds.len());
    fuzz("analyze", &seeds, 3000, &|bytes| {
        let bytes = bytes.to_vec();
        within(std::time::Duration::from_secs(60), move || {
            checks::mail(&bytes)
        });
    });
}

/// Real evidence of the gateway: receipts, receipt contents, evidence
/// records and tokens of a stamped thread, and the CA that signed them.
struct Made {
    receipts: Vec<Vec<u8>>,
    contents: Vec<Vec<u8>>,
    records: Vec<Vec<u8>>,
    tokens: Vec<Vec<u8>>,
    messages: Vec<Vec<u8>>,
    trust: mailnotary::signing::Trust,
}

fn made(dir: &Path) -> Made {
    let data = dir.join("data");
    let out = mailnotary(&data, &["ingest", "sample-mails/dispute"]);
    assert!(out.status.success());
    let archive =
        mailnotary::archive::Archive::open(&data, &mailnotary::store::StoreOptions::default())
            .unwrap();
    archive
        .use_archive_key(&data.join("keys/archive.key"))
        .unwrap();
    let query = mailnotary::archive::query::Query {
        selector: mailnotary::archive::query::Selector::All,
        since: None,
        until: None,
    };
    let mut m = Made {
        receipts: Vec::new(),
        contents: Vec::new(),
        records: Vec::new(),
        tokens: Vec::new(),
        messages: Vec::new(),
        trust: mailnotary::signing::Trust::new(vec![
            mailnotary::signing::read_certificates(
                &std::fs::read(data.join("keys/ca.cert.pem")).unwrap(),
            )
            .unwrap()
            .remove(0),
        ]),
    };
    for r in archive.find(&query).unwrap() {
        let id = r.id().unwrap();
        let receipt = archive.receipt(&id).unwrap().unwrap();
        m.receipts.push(receipt.signed);
        m.contents.push(receipt.content);
        let evidence = archive.evidence(&id).unwrap().unwrap();
        m.records.push(evidence.record);
        m.tokens
            .push(archive.batch_token(evidence.batch.number).unwrap().unwrap());
        m.messages.push(archive.raw(&id).unwrap().unwrap());
    }
    // Foreign tokens too.
    let mut paths = Vec::new();
    files_under(&root().join("tests/data/tsa-tokens"), &mut paths);
    for p in paths {
        if p.extension().is_some_and(|e| e == "tsr" || e == "der") {
            m.tokens.push(std::fs::read(p).unwrap());
        }
    }
    archive.close();
    m
}

#[test]
fn decoders_and_verify_survive_mutated_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let m = made(dir.path());
    fuzz("receipt-content", &m.contents, 3000, &|bytes| {
        checks::receipt(&m.trust, bytes)
    });
    fuzz("evidence-record", &m.records, 3000, &checks::evidence);
    fuzz("token", &m.tokens, 3000, &checks::evidence);
    fuzz("signed-data", &m.receipts, 2000, &|bytes| {
        checks::receipt(&m.trust, bytes)
    });
    // verify with every part mutated: the file, the receipt, the record.
    let triples: Vec<Vec<u8>> = (0..m.receipts.len())
        .map(|i| checks::join([&m.messages[i], &m.receipts[i], &m.records[i]]))
        .collect();
    fuzz("verify", &triples, 1500, &|bytes| {
        checks::verify(&m.trust, bytes)
    });
    let bundle = std::fs::read(root().join("fuzz/seeds/bundle/thread.zip")).unwrap();
    fuzz("bundle", &[bundle], 300, &checks::bundle);
}

#[test]
fn the_dkim_verifier_survives_mutated_signed_mail() {
    let corpus = root().join("sample-mails/corpus/dkim-stalwart-mail-auth");
    let mut seeds = Vec::new();
    for n in 1..=5 {
        let bytes = std::fs::read(corpus.join(format!("{n:03}.txt"))).unwrap();
        let at = bytes.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        seeds.push(bytes[at..].to_vec());
    }
    seeds.push(std::fs::read(root().join("sample-mails/corpus/mimekit/dkim/gmail.msg")).unwrap());
    let verifier = mailnotary::dkim::Verifier::offline().unwrap();
    let keys = vec![mailnotary::dkim::CapturedKey {
        name: "brisbane._domainkey.football.example.com".into(),
        record: Some("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=".into()),
        sha256: None,
        missing: None,
    }];
    fuzz("dkim", &seeds, 1500, &|bytes| {
        let report = verifier.recheck(bytes, &keys, 1_700_000_000);
        for v in &report.signatures {
            assert!(
                ["pass", "fail", "neutral", "permerror", "temperror", "none"]
                    .contains(&v.result.as_str()),
                "{v:?}"
            );
        }
    });
}

/// Sends `bytes` as one SMTP session, closes the write side, and checks
/// what came back.
fn smtp_exchange(addr: std::net::SocketAddr, bytes: &[u8]) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    checks::smtp_answer(&answer);
}

/// The daemon is alive, healthy and has not panicked; it stops cleanly.
fn still_sane(daemon: Daemon) {
    let health = daemon.health();
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        !daemon.log_text().contains("panicked"),
        "{}",
        daemon.log_text()
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

/// The inputs a clean checkout holds for a fuzz target, in path order: the
/// seed folders `fuzz/seeds.txt` names for it (the same that fuzz/run.sh
/// hands to libFuzzer) and the corpus the coverage-guided runs grew and
/// minimized, where it is committed.
fn committed_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let list = std::fs::read_to_string(root().join("fuzz/seeds.txt")).unwrap();
    let mut dirs: Vec<PathBuf> = list
        .lines()
        .filter_map(|line| line.strip_prefix(target)?.strip_prefix(' '))
        .flat_map(|rest| rest.split_whitespace().map(|d| root().join(d)))
        .collect();
    dirs.push(root().join("fuzz/corpus").join(target));
    let mut paths = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        files_under(dir, &mut paths);
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

#[test]
fn the_smtp_listener_survives_mutated_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"), &[]);
    let message = std::fs::read(root().join(dispute_file(2))).unwrap();
    let mut session = b"EHLO fuzz.example\r\nMAIL FROM:<a@b.example> SIZE=100\r\n\
        RCPT TO:<archive@localhost>\r\nDATA\r\n"
        .to_vec();
    session.extend_from_slice(&message);
    session.extend_from_slice(b"\r\n.\r\nBDAT 5 LAST\r\nhello RSET\r\nNOOP\r\nQUIT\r\n");
    let mut seeds = vec![session];
    seeds.extend(committed_inputs("smtp_session").into_iter().map(|(_, b)| b));
    let addr = daemon.smtp;
    fuzz("smtp", &seeds, 150, &|bytes| smtp_exchange(addr, bytes));
    still_sane(daemon);
}

#[test]
fn the_committed_fuzz_corpora_replay_cleanly() {
    let trust = checks::fixture_trust();
    let mut counts = Vec::new();
    let mut run = |target: &str, check: &dyn Fn(&[u8])| {
        let inputs = committed_inputs(target);
        assert!(
            !inputs.is_empty(),
            "no committed inputs for the {target} fuzz target"
        );
        for (path, bytes) in &inputs {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(bytes)));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
        counts.push(format!("{target} {}", inputs.len()));
    };
    run("mail", &|b| {
        let b = b.to_vec();
        within(std::time::Duration::from_secs(60), move || checks::mail(&b))
    });
    run("receipt", &|b| checks::receipt(&trust, b));
    run("evidence", &checks::evidence);
    run("verify", &|b| checks::verify(&trust, b));
    run("bundle", &checks::bundle);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"), &[]);
    let addr = daemon.smtp;
    run("smtp_session", &|b| smtp_exchange(addr, b));
    still_sane(daemon);
    eprintln!("replayed: {}", counts.join(", "));
}
