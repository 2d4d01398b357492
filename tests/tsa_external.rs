// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The RFC 3161 client against independent TSAs: OpenSSL's `ts -reply`
//! behind a small HTTP wrapper (tests/support/openssl_tsa.py; RSA-2048 and
//! P-256 keys, ESSCertID v1 and v2, fractional genTime, tokens with and
//! without certificates) and `mailnotary tsa serve` in another data
//! directory. A TSA that answers HTTP 500, garbage, a rejection or nothing
//! at all is survived: the messages stay pending, nothing is lost, and
//! `mailnotary stamp --wait` keeps trying until the TSA is back. Failover moves
//! to the next TSA in the list, and mode `all` keeps every TSA's token.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{dispute_file, have, mailnotary, root, skip, stderr, stdout};

/// The dispute thread, which messages 02, 05 and 07 belong to.
const THREAD: &str = "<202603161448057719204@huarui-precision.example>";

/// A running OpenSSL-backed TSA; stopped when dropped.
struct OpensslTsa {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl OpensslTsa {
    fn start(dir: &Path, key: &str, ess: &str, precision: u32, fault: &str) -> OpensslTsa {
        std::fs::create_dir_all(dir).unwrap();
        let port_file = dir.join("port");
        let child = Command::new("python3")
            .arg(root().join("tests/support/openssl_tsa.py"))
            .arg("--dir")
            .arg(dir)
            .args(["--key", key, "--ess", ess, "--precision"])
            .arg(precision.to_string())
            .arg("--fault")
            .arg(fault)
            .arg("--port-file")
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !port_file.exists() {
            assert!(Instant::now() < deadline, "the OpenSSL TSA did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let port = std::fs::read_to_string(&port_file).unwrap();
        OpensslTsa {
            child,
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{}/", port.trim()),
        }
    }

    fn control(&self, path: &str, body: Option<&str>) -> String {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "-m", "10"]);
        if let Some(body) = body {
            curl.args(["--data-binary", body]);
        }
        let out = curl
            .arg(format!("{}control/{path}", self.url))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {path}: {}", stderr(&out));
        stdout(&out)
    }

    fn set_fault(&self, fault: &str) {
        assert_eq!(self.control("fault", Some(fault)).trim(), "ok");
    }

    fn requests(&self) -> u64 {
        let stats: serde_json::Value = serde_json::from_str(&self.control("stats", None)).unwrap();
        stats["requests"].as_u64().unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// A child process killed when dropped, so a failing test leaves no server.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for OpensslTsa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn missing_tools() -> Option<String> {
    ["openssl", "python3", "curl"]
        .into_iter()
        .find(|t| !have(t))
        .map(|t| format!("needs {t}"))
}

/// One `[[tsa]]` table.
fn tsa_table(name: &str, url: &str, ca: &Path, extra: &str) -> String {
    format!(
        "[[tsa]]\nname = \"{name}\"\nurl = \"{url}\"\nca_file = \"{}\"\n\
         timeout_secs = 2\nretries = 1\n{extra}\n",
        ca.display()
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mailnotary.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(data: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    mailnotary(data, &all)
}

fn statuses(data: &Path, config: &Path) -> Vec<String> {
    let out = run(data, config, &["lookup", "--thread", THREAD, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap().to_string())
        .collect()
}

fn ingest_two(data: &Path, config: &Path) -> std::process::Output {
    run(
        data,
        config,
        &["ingest", &dispute_file(2), &dispute_file(5)],
    )
}

/// genTime of batch `n`'s token as written in the DER, to see fractions.
fn gen_time_text(data: &Path, batch: u64) -> String {
    let archive = mailnotary::archive::Archive::open(data, &Default::default()).unwrap();
    let token = archive.batch_token(batch).unwrap().unwrap();
    let info = mailnotary::tsa::token::inspect(&token).unwrap();
    archive.close();
    info.gen_time.to_rfc3339()
}

#[test]
fn openssl_tsas_stamp_batches_that_verify() {
    let test = "openssl_tsas_stamp_batches_that_verify";
    if let Some(why) = missing_tools() {
        return skip(test, &why);
    }
    let work = tempfile::tempdir().unwrap();
    // RSA-2048, ESSCertID v1, genTime with milliseconds, certificate in
    // the token; then P-256, ESSCertIDv2, and no certificate in the token
    // (cert_req = false), so the TSA certificate comes from certs_file.
    for (key, ess, precision, cert_req) in [("rsa", "v1", 3, true), ("p256", "v2", 0, false)] {
        let tsa = OpensslTsa::start(&work.path().join(key), key, ess, precision, "none");
        let extra = if cert_req {
            String::new()
        } else {
            format!(
                "cert_req = false\ncerts_file = \"{}\"",
                tsa.dir.join("tsa.pem").display()
            )
        };
        let config = write_config(
            &work.path().join(key),
            &tsa_table(&format!("openssl-{key}"), &tsa.url, &tsa.ca(), &extra),
        );
        let data = work.path().join(format!("data-{key}"));
        let out = ingest_two(&data, &config);
        assert!(
            out.status.success(),
            "{key}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains("stamped 2 messages in 1 batch"),
            "{}",
            stdout(&out)
        );
        assert_eq!(tsa.requests(), 1, "{key}: one request per batch");
        assert_eq!(statuses(&data, &config), ["stamped", "stamped"]);

        // A second batch, chained to the first.
        let out = run(&data, &config, &["ingest", &dispute_file(7)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(tsa.requests(), 2);
        if precision > 0 {
            // OpenSSL drops a fraction of .000; two tokens both landing on
            // a whole second happens once in a million runs.
            let fractional = (1..=2).any(|b| gen_time_text(&data, b).contains('.'));
            assert!(fractional, "{key}: genTime with milliseconds");
        }

        // verify trusts the configured TSA's CA, and check re-verifies all.
        let out = run(&data, &config, &["verify", &dispute_file(5), "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{key}: {report:#}");
        let timestamp = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "timestamp")
            .unwrap();
        assert!(
            timestamp["detail"]
                .as_str()
                .unwrap()
                .contains("Interop Test TSA"),
            "{timestamp}"
        );
        let out = run(&data, &config, &["check"]);
        assert!(out.status.success(), "{key}: {}", stdout(&out));

        // The bundle carries the TSA's CA: a machine with no archive and
        // no --trust verifies from the bundle alone (with the warning).
        let zip = work.path().join(format!("{key}.zip"));
        let out = run(
            &data,
            &config,
            &["export", "--thread", THREAD, "--out", zip.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = mailnotary(
            &work.path().join("no-archive"),
            &[
                "verify",
                &dispute_file(5),
                "--bundle",
                zip.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{key}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("Interop Test Root CA"),
            "{}",
            stdout(&out)
        );

        // Without the TSA's CA, the same evidence is refused as untrusted.
        let local_ca = data.join("keys/ca.cert.pem");
        let out = run(
            &data,
            &config,
            &[
                "verify",
                &dispute_file(5),
                "--trust",
                local_ca.to_str().unwrap(),
                "--json",
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let failed: Vec<&serde_json::Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .collect();
        assert_eq!(failed.len(), 1, "{report:#}");
        assert_eq!(failed[0]["name"], "timestamp");
        let detail = failed[0]["detail"].as_str().unwrap();
        assert!(
            detail.contains("not from a trusted TSA")
                || detail.contains("neither in the signature"),
            "{detail}"
        );
    }
}

#[test]
fn tsa_serve_of_another_gateway_stamps_batches() {
    let test = "tsa_serve_of_another_gateway_stamps_batches";
    if let Some(why) = missing_tools() {
        return skip(test, &why);
    }
    let work = tempfile::tempdir().unwrap();
    let tsa_data = work.path().join("tsa-data");
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_mailnotary"))
            .arg("--data")
            .arg(&tsa_data)
            .args(["tsa", "serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut first_line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let url = first_line
        .trim()
        .strip_prefix("mailnotary TSA listening on ")
        .unwrap()
        .to_string();
    let config = write_config(
        work.path(),
        &tsa_table(
            "other-gateway",
            &url,
            &tsa_data.join("keys/ca.cert.pem"),
            "policy = \"1.2.3.4.1\"",
        ),
    );
    let data = work.path().join("data");
    let out = ingest_two(&data, &config);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(statuses(&data, &config), ["stamped", "stamped"]);
    let out = run(&data, &config, &["verify", &dispute_file(2)]);
    assert!(out.status.success(), "{}", stdout(&out));

    // A policy the TSA does not have is refused by it, and the client says so.
    let config = write_config(
        work.path(),
        &tsa_table(
            "other-gateway",
            &url,
            &tsa_data.join("keys/ca.cert.pem"),
            "policy = \"1.2.3.4.99\"",
        ),
    );
    let out = run(&data, &config, &["ingest", &dispute_file(7)]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("1 message stays pending"), "{text}");
    assert!(text.contains("the TSA refused (status 2"), "{text}");
}

#[test]
fn outages_leave_messages_pending_until_a_tsa_answers() {
    let test = "outages_leave_messages_pending_until_a_tsa_answers";
    if let Some(why) = missing_tools() {
        return skip(test, &why);
    }
    let work = tempfile::tempdir().unwrap();
    let tsa = OpensslTsa::start(&work.path().join("flaky"), "p256", "v2", 0, "500");
    let config = write_config(work.path(), &tsa_table("flaky", &tsa.url, &tsa.ca(), ""));
    let data = work.path().join("data");

    // HTTP 500: stored, not stamped, said plainly; one retry was made.
    let out = ingest_two(&data, &config);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("ingested 2 new messages"), "{text}");
    assert!(text.contains("2 messages stay pending"), "{text}");
    assert!(text.contains("HTTP status 500"), "{text}");
    assert_eq!(tsa.requests(), 2, "a first attempt and one retry");
    assert_eq!(statuses(&data, &config), ["pending", "pending"]);

    // Garbage, a rejection and silence are each survived the same way.
    for (fault, says) in [
        ("garbage", "not a timestamp response"),
        ("rejection", "the TSA refused (status 2: fault injected"),
        ("timeout", "no answer within the timeout"),
    ] {
        tsa.set_fault(fault);
        let out = run(&data, &config, &["stamp"]);
        assert_eq!(out.status.code(), Some(1), "{fault}: {}", stdout(&out));
        assert!(stdout(&out).contains(says), "{fault}: {}", stdout(&out));
        assert_eq!(statuses(&data, &config), ["pending", "pending"], "{fault}");
    }

    // `stamp --wait` keeps trying with growing waits while the TSA is
    // down, and finishes once it is back.
    tsa.set_fault("500");
    let before = tsa.requests();
    let mut waiting = Killed(
        Command::new(env!("CARGO_BIN_EXE_mailnotary"))
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["stamp", "--wait"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while tsa.requests() < before + 4 {
        assert!(Instant::now() < deadline, "stamp --wait stopped asking");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(waiting.0.try_wait().unwrap().is_none(), "still waiting");
    tsa.set_fault("none");
    let status = loop {
        if let Some(status) = waiting.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "stamp --wait did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut waiting.0.stdout.take().unwrap(), &mut text).unwrap();
    assert!(status.success(), "{text}");
    assert!(text.contains("stamped 2 messages in 1 batch"), "{text}");
    assert!(text.contains("; 0 pending"), "{text}");
    assert_eq!(statuses(&data, &config), ["stamped", "stamped"]);

    // Nothing left: `stamp` says so.
    tsa.set_fault("none");
    let before = tsa.requests();
    let out = run(&data, &config, &["stamp"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("nothing pending"));
    assert_eq!(tsa.requests(), before);
    let out = run(&data, &config, &["verify", &dispute_file(2)]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = run(&data, &config, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn failover_and_every_tsa_modes() {
    let test = "failover_and_every_tsa_modes";
    if let Some(why) = missing_tools() {
        return skip(test, &why);
    }
    let work = tempfile::tempdir().unwrap();
    let down = OpensslTsa::start(&work.path().join("down"), "p256", "v2", 0, "500");
    let up = OpensslTsa::start(&work.path().join("up"), "rsa", "v2", 0, "none");
    let both = format!(
        "{}{}",
        tsa_table("down", &down.url, &down.ca(), ""),
        tsa_table("up", &up.url, &up.ca(), "")
    );

    // First mode: the failing TSA is tried (and retried), then the next.
    let config = write_config(work.path(), &both);
    let data = work.path().join("failover");
    let out = ingest_two(&data, &config);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!((down.requests(), up.requests()), (2, 1));
    assert_eq!(statuses(&data, &config), ["stamped", "stamped"]);

    // All mode: a batch waits until every TSA answered, then keeps both
    // tokens; check verifies the second one too.
    let config = write_config(
        work.path(),
        &format!("[stamping]\nmode = \"all\"\n\n{both}"),
    );
    let data = work.path().join("all");
    let out = ingest_two(&data, &config);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(statuses(&data, &config), ["pending", "pending"]);
    down.set_fault("none");
    let out = run(&data, &config, &["stamp"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let archive = mailnotary::archive::Archive::open(&data, &Default::default()).unwrap();
    let batch = archive.last_batch().unwrap().unwrap();
    assert_eq!(batch.tsa, "down");
    assert_eq!(batch.also_stamped_by, ["up"]);
    assert_eq!(archive.batch_extra_tokens(batch.number).unwrap().len(), 1);
    archive.close();
    let out = run(&data, &config, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// How long the outage under load lasts (seconds); the notes record a run
/// of a full minute.
fn outage_secs() -> u64 {
    std::env::var("MAILNOTARY_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

#[test]
fn a_tsa_outage_under_smtp_load_costs_no_smtp_error_and_evidence_completes_after() {
    let test = "a_tsa_outage_under_smtp_load_costs_no_smtp_error_and_evidence_completes_after";
    if let Some(why) = missing_tools() {
        return skip(test, &why);
    }
    let dir = tempfile::tempdir().unwrap();
    // The only TSA answers 500 from the start.
    let tsa = OpensslTsa::start(&dir.path().join("tsa"), "p256", "v2", 0, "500");
    let config = write_config(
        dir.path(),
        &format!(
            "[stamping]\nwindow_ms = 200\n\n{}",
            tsa_table("accredited", &tsa.url, &tsa.ca(), "")
        ),
    );
    let data = dir.path().join("data");
    let daemon = common::Daemon::start(&data, &["--config", config.to_str().unwrap()]);

    // Load while the TSA is down: batches of messages over the outage.
    let outage = Duration::from_secs(outage_secs());
    let started = Instant::now();
    let mut sent = 0;
    let mut round = 0;
    while started.elapsed() < outage || round < 2 {
        let files: Vec<String> = (0..25)
            .map(|i| {
                let path = dir.path().join(format!("m-{round}-{i}.eml"));
                std::fs::write(
                    &path,
                    format!(
                        "From: a@supplier.example\r\nSubject: order {round}-{i}\r\n\
                         Message-ID: <{round}-{i}@supplier.example>\r\n\r\nqty {i}\r\n"
                    ),
                )
                .unwrap();
                path.display().to_string()
            })
            .collect();
        let mut args = vec!["--port".to_string(), daemon.smtp.port().to_string()];
        args.extend(files);
        let replies = common::python_json("smtp_send.py", &args);
        for r in replies.as_array().unwrap() {
            assert_eq!(r["code"], 250, "an SMTP error during the outage: {r}");
        }
        sent += 25;
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let health = daemon.health();
    assert_eq!(
        health["pending"], sent,
        "nothing is stamped while the TSA is down"
    );
    assert!(tsa.requests() >= 2, "the stamper kept trying");

    // The TSA comes back: every message gets its evidence.
    tsa.set_fault("none");
    daemon.wait_stamped(Duration::from_secs(120));
    let out = mailnotary(&data, &["lookup", "--all", "--json"]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), sent as usize);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "stamped")
    );
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    eprintln!(
        "outage of {:?}: {sent} messages acknowledged, all stamped after, {} TSA requests",
        started.elapsed(),
        tsa.requests()
    );
    assert_eq!(daemon.stop().code(), Some(0));
}
