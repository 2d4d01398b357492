// SPDX-License-Identifier: Apache-2.0 OR MIT
//! DKIM at arrival against a real DNS server (dnsmasq on a loopback port):
//! messages signed by an independent signer (Python's dkimpy) pass, changed
//! ones fail with the reason, an unknown selector is a permerror; the real
//! signed messages of the corpus verify against the records they carry;
//! once the key is gone from DNS, `verify` still checks the signature with
//! the record captured at arrival; a dead resolver gives temperror within
//! the timeout and the message is stored and stamped all the same.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Daemon, DnsServer, export_message, have, mailnotary, openssl_receipt_content, python_json,
    root, skip, stderr, stdout,
};
use mailnotary::config::DnsConfig;
use mailnotary::dkim::{DkimReport, Verifier};
use serde_json::Value;

const MESSAGE: &str = "From: Sales <sales@huarui.example>\r\n\
To: Buyer <buyer@corp.example>\r\n\
Subject: Quotation Q-2026-118, unit price USD 41.50\r\n\
Date: Mon, 16 Mar 2026 14:48:05 +0800\r\n\
Message-ID: <MSGID@huarui.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Dear buyer,\r\n\
\r\n\
our price for part HR-7741 is USD 41.50 per unit, valid until 30 April.\r\n\
\r\n\
Regards,\r\n\
Sales\r\n";

/// Why this machine cannot sign with dkimpy, or `None`.
fn dkimpy_missing() -> Option<&'static str> {
    if !have("python3") {
        return Some("python3 is not installed");
    }
    if !have("openssl") {
        return Some("openssl is not installed");
    }
    let ok = Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then_some("the Python packages dkimpy and PyNaCl are not installed")
}

/// Signs `(id, out)` pairs of MESSAGE with a new key; returns the DNS
/// record (name, text).
fn sign(dir: &Path, selector: &str, key: &str, canon: &str, ids: &[&str]) -> (String, String) {
    let mut args: Vec<String> = [
        "--domain",
        "huarui.example",
        "--selector",
        selector,
        "--key",
        key,
        "--canon",
        canon,
        "--keydir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(dir.join(format!("keys-{selector}")).display().to_string());
    for id in ids {
        let source = dir.join(format!("{id}.plain"));
        std::fs::write(&source, MESSAGE.replace("MSGID", id)).unwrap();
        args.push(source.display().to_string());
        args.push(dir.join(format!("{id}.eml")).display().to_string());
    }
    let out = python_json("dkim_sign.py", &args);
    (
        out["name"].as_str().unwrap().to_string(),
        out["record"].as_str().unwrap().to_string(),
    )
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)))
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn independent_signatures_pass_changes_fail_and_captured_keys_outlive_dns() {
    let test = "independent_signatures_pass_changes_fail_and_captured_keys_outlive_dns";
    if let Some(why) = dkimpy_missing() {
        return skip(test, why);
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let rsa_rs = sign(
        work,
        "rsa-rs",
        "rsa",
        "relaxed/simple",
        &["rs", "body", "header"],
    );
    let rsa_ss = sign(work, "rsa-ss", "rsa", "simple/simple", &["ss"]);
    let ed = sign(work, "ed", "ed25519", "relaxed/relaxed", &["ed"]);
    // Signed with a key whose record DNS does not have.
    let _gone = sign(work, "unknown", "rsa", "relaxed/simple", &["unknown"]);
    // After signing: one body changed, one signed header field changed.
    edit(
        &work.join("body.eml"),
        "USD 41.50 per unit",
        "USD 38.00 per unit",
    );
    edit(
        &work.join("header.eml"),
        "Subject: Quotation",
        "Subject: Revised quotation",
    );

    let Some(mut dns) = DnsServer::start(
        test,
        &work.join("dns"),
        &[rsa_rs.clone(), rsa_ss.clone(), ed.clone()],
    ) else {
        return;
    };
    let config = work.join("mailnotary.toml");
    std::fs::write(
        &config,
        format!("[dns]\nnameservers = [\"{}\"]\n", dns.address()),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let data = work.join("data");
    let files: Vec<PathBuf> = ["rs", "ss", "ed", "body", "header", "unknown"]
        .iter()
        .map(|id| work.join(format!("{id}.eml")))
        .collect();
    let mut args = vec!["--config", config, "ingest"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = mailnotary(&data, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let messages = json_of(&mailnotary(&data, &["lookup", "--all", "--json"]));
    let dkim_of = |id: &str| -> Value {
        let m = messages
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message_id"] == format!("{id}@huarui.example"))
            .unwrap_or_else(|| panic!("{id} not stored: {messages:#}"));
        assert_eq!(m["status"], "stamped", "{m:#}");
        let dkim = m["dkim"].as_array().unwrap();
        assert_eq!(dkim.len(), 1, "{id}: {m:#}");
        dkim[0].clone()
    };
    for (id, selector, algorithm) in [
        ("rs", "rsa-rs", "rsa-sha256"),
        ("ss", "rsa-ss", "rsa-sha256"),
        ("ed", "ed", "ed25519-sha256"),
    ] {
        let d = dkim_of(id);
        assert_eq!(d["result"], "pass", "{id}: {d:#}");
        assert_eq!(d["domain"], "huarui.example");
        assert_eq!(d["selector"], selector);
        assert_eq!(d["algorithm"], algorithm);
    }
    let body = dkim_of("body");
    assert_eq!(body["result"], "fail", "{body:#}");
    assert!(
        body["reason"].as_str().unwrap().contains("body hash"),
        "{body:#}"
    );
    let header = dkim_of("header");
    assert_eq!(header["result"], "fail", "{header:#}");
    assert!(header["reason"].as_str().is_some(), "{header:#}");
    let unknown = dkim_of("unknown");
    assert_eq!(unknown["result"], "permerror", "{unknown:#}");

    // The receipt holds the key record that was used: OpenSSL checks the
    // receipt and puts out content holding the record's bytes.
    let zip = work.join("ed.zip");
    let unzipped = work.join("ed");
    export_message(&data, &[], "ed@huarui.example", &zip, &unzipped);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unzipped.join("manifest.json")).unwrap()).unwrap();
    let entry = &manifest["messages"][0];
    assert_eq!(entry["dkim"][0]["result"], "pass");
    let key_file = unzipped.join(entry["dkim_keys"][0]["file"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), ed.1);
    if have("openssl") {
        let content = openssl_receipt_content(
            &unzipped.join("receipts/001.p7s"),
            &unzipped.join("certs/ca.cert.pem"),
        );
        assert!(
            content.windows(ed.1.len()).any(|w| w == ed.1.as_bytes()),
            "the receipt content holds the key record"
        );
    }

    // The keys leave DNS: the server stops. verify still checks each
    // signature, with the record captured at arrival.
    dns.stop();
    for (file, expected) in [
        (&files[0], "pass"),
        (&files[2], "pass"),
        (&files[3], "fail"),
    ] {
        let out = mailnotary(
            &data,
            &[
                "--config",
                config,
                "verify",
                file.to_str().unwrap(),
                "--json",
            ],
        );
        let report = json_of(&out);
        assert_eq!(report["dkim"][0]["result"], expected, "{report:#}");
        assert_eq!(report["dkim"][0]["recorded"], expected, "{report:#}");
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "dkim")
            .unwrap_or_else(|| panic!("no dkim check: {report:#}"));
        assert_eq!(check["ok"], true, "{report:#}");
        assert!(
            check["detail"]
                .as_str()
                .unwrap()
                .contains("key records captured at arrival"),
            "{check}"
        );
    }
    let out = mailnotary(&data, &["verify", files[2].to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("pass for d=huarui.example s=ed"),
        "{}",
        stdout(&out)
    );

    // The same from the bundle alone, on a machine with no archive.
    let nowhere = work.join("nowhere");
    let out = mailnotary(
        &nowhere,
        &[
            "verify",
            files[2].to_str().unwrap(),
            "--bundle",
            zip.to_str().unwrap(),
            "--trust",
            data.join("keys/ca.cert.pem").to_str().unwrap(),
            "--json",
        ],
    );
    let report = json_of(&out);
    assert_eq!(report["verified"], true, "{report:#}");
    assert_eq!(report["dkim"][0]["result"], "pass", "{report:#}");
}

/// The records and the message of a corpus file: `<selector or name>
/// <record>` lines, a blank line, the message.
fn corpus_file(path: &Path) -> (Vec<(String, String)>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| (p, p + 2))
        .unwrap();
    let head = String::from_utf8(bytes[..split.0].to_vec()).unwrap();
    // The files keep their messages with LF line ends; on the wire, where
    // they were signed, lines end in CRLF (simple canonicalization sees the
    // difference).
    let message: Vec<u8> = if bytes[split.1..].contains(&b'\r') {
        bytes[split.1..].to_vec()
    } else {
        String::from_utf8_lossy(&bytes[split.1..])
            .replace('\n', "\r\n")
            .into_bytes()
    };
    let domains: Vec<String> = mailnotary::dkim::Verifier::offline()
        .unwrap()
        .recheck(&message, &[], 0)
        .signatures
        .iter()
        .map(|v| v.domain.clone())
        .collect();
    let mut records = Vec::new();
    for line in head.lines() {
        let (name, record) = line.split_once(' ').unwrap();
        if name.contains("._domainkey.") {
            records.push((name.to_lowercase(), record.to_string()));
        } else {
            for domain in &domains {
                records.push((format!("{name}._domainkey.{domain}"), record.to_string()));
            }
        }
    }
    (records, message)
}

/// The `t=` of the first DKIM-Signature of `message`.
fn signed_at(message: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(message);
    let at = text.find("t=").unwrap();
    text[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A corpus message: its file, the DNS records it needs, its bytes.
type Case = (String, Vec<(String, String)>, Vec<u8>);

#[test]
fn corpus_signatures_verify_against_the_records_they_carry() {
    let test = "corpus_signatures_verify_against_the_records_they_carry";
    let dir = tempfile::tempdir().unwrap();
    let corpus = root().join("sample-mails/corpus");
    let mut cases: Vec<Case> = Vec::new();
    for n in 1..=5 {
        let name = format!("dkim-stalwart-mail-auth/{n:03}.txt");
        let (records, message) = corpus_file(&corpus.join(&name));
        cases.push((name, records, message));
    }
    // Gmail: the key is given as a PEM public key.
    let pem = std::fs::read_to_string(corpus.join("mimekit/dkim/gmail.pub")).unwrap();
    let p: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    cases.push((
        "mimekit/dkim/gmail.msg".into(),
        vec![(
            "20120113._domainkey.gmail.com".into(),
            format!("v=DKIM1; k=rsa; p={p}"),
        )],
        std::fs::read(corpus.join("mimekit/dkim/gmail.msg")).unwrap(),
    ));
    let all: Vec<(String, String)> = cases.iter().flat_map(|c| c.1.clone()).collect();
    let Some(mut dns) = DnsServer::start(test, &dir.path().join("dns"), &all) else {
        return;
    };
    let verifier = Verifier::new(&DnsConfig {
        nameservers: vec![dns.address()],
        timeout_ms: 2000,
    })
    .unwrap();
    let mut captured: Vec<(usize, DkimReport, u64)> = Vec::new();
    for (i, (name, _, message)) in cases.iter().enumerate() {
        // The expired one is checked at its signing time, as the gateway
        // would have checked it on arrival.
        let expires = String::from_utf8_lossy(message).contains(" x=");
        let at = if expires {
            signed_at(message)
        } else {
            mailnotary::envelope::now_millis() / 1000
        };
        let report = verifier.check_at(message, at);
        assert!(!report.signatures.is_empty(), "{name}");
        for v in &report.signatures {
            assert_eq!(v.result, "pass", "{name}: {report:#?}");
        }
        for key in &report.keys {
            assert!(
                key.record.is_some() && key.sha256.is_some(),
                "{name}: {key:?}"
            );
        }
        if expires {
            let today = verifier.check(message);
            assert_eq!(today.signatures[0].result, "neutral", "{name}: {today:#?}");
            assert!(
                today.signatures[0]
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("expired"),
                "{today:#?}"
            );
        }
        captured.push((i, report, at));
    }
    // 001 carries both an Ed25519 and an RSA signature.
    let algorithms: Vec<&str> = captured[0]
        .1
        .signatures
        .iter()
        .map(|v| v.algorithm.as_str())
        .collect();
    assert_eq!(algorithms, ["ed25519-sha256", "rsa-sha256"]);

    // With DNS gone, the captured records alone give the same results, and
    // a changed record does not.
    dns.stop();
    let offline = Verifier::offline().unwrap();
    for (i, report, at) in &captured {
        let again = offline.recheck(&cases[*i].2, &report.keys, *at);
        assert_eq!(again.signatures, report.signatures, "{}", cases[*i].0);
    }
    let (i, report, at) = &captured[5];
    let mut keys = report.keys.clone();
    let record = keys[0].record.as_mut().unwrap();
    let p = record.find("p=").unwrap() + 2;
    record.replace_range(p..p + 40, &"A".repeat(40));
    let again = offline.recheck(&cases[*i].2, &keys, *at);
    assert_ne!(again.signatures[0].result, "pass", "{again:#?}");
}

#[test]
fn a_dead_resolver_gives_temperror_and_the_message_is_still_stamped() {
    let test = "a_dead_resolver_gives_temperror_and_the_message_is_still_stamped";
    if let Some(why) = dkimpy_missing() {
        return skip(test, why);
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    sign(work, "sel", "ed25519", "relaxed/relaxed", &["dead"]);
    // A resolver that takes queries and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = work.join("mailnotary.toml");
    std::fs::write(
        &config,
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_ms = 500\n[stamping]\nwindow_ms = 200\n",
            silent.local_addr().unwrap()
        ),
    )
    .unwrap();
    let data = work.join("data");
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let started = Instant::now();
    let sent = python_json(
        "smtp_send.py",
        &[
            "--port".to_string(),
            daemon.smtp.port().to_string(),
            work.join("dead.eml").display().to_string(),
        ],
    );
    let waited = started.elapsed();
    assert_eq!(sent[0]["code"], 250, "{sent}");
    // The session waited for DNS no longer than the timeout and a margin
    // for the rest of the exchange, not for the resolver's own retries.
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    daemon.wait_stamped(Duration::from_secs(30));
    let m = &json_of(&mailnotary(&data, &["lookup", "--all", "--json"]))[0];
    assert_eq!(m["status"], "stamped");
    assert_eq!(m["dkim"][0]["result"], "temperror", "{m:#}");
    assert!(
        m["dkim"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("did not answer within 500 ms"),
        "{m:#}"
    );
    assert_eq!(daemon.stop().code(), Some(0));
}

#[test]
fn a_rule_with_dkim_off_checks_nothing() {
    let test = "a_rule_with_dkim_off_checks_nothing";
    if let Some(why) = dkimpy_missing() {
        return skip(test, why);
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let record = sign(work, "sel", "rsa", "relaxed/simple", &["off"]);
    let Some(dns) = DnsServer::start(test, &work.join("dns"), &[record]) else {
        return;
    };
    let policies = work.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("50-all.toml"),
        "[[rule]]\nname = \"no-dkim\"\ndkim = \"off\"\n",
    )
    .unwrap();
    let config = work.join("mailnotary.toml");
    std::fs::write(
        &config,
        format!(
            "[dns]\nnameservers = [\"{}\"]\n[policy]\ndir = {:?}\n",
            dns.address(),
            policies.display().to_string()
        ),
    )
    .unwrap();
    let data = work.join("data");
    let out = mailnotary(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "ingest",
            work.join("off.eml").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let m = &json_of(&mailnotary(&data, &["lookup", "--all", "--json"]))[0];
    assert_eq!(m["dkim"], serde_json::json!([]), "{m:#}");
}
