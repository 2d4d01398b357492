// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Policies end to end: hash-only mode leaves no byte of a message on disk,
//! archive mode seals it and gives it back exactly, a missing or wrong
//! archive key is refused without harm, retention purges bytes but keeps
//! evidence except under legal hold (with an injected clock), every kind of
//! policy error stops `ingest` and `serve`, rules choose TSAs and write
//! their statement into receipts, and receipt notifications reach a real
//! SMTP server (Postfix's smtp-sink) after it comes back.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Daemon, export_message, have, mailnotary, openssl_receipt_content, python_json, skip, stderr,
    stdout,
};
use mailnotary::archive::Archive;
use mailnotary::envelope::{Envelope, Source, now_millis};
use mailnotary::policy::{Known, Policy};
use mailnotary::store::{BackendKind, StoreOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Distinctive words of the confidential message: its body, its subject,
/// its attachment's content and the attachment's file name.
const BODY_PHRASE: &str = "Quillback-5529 is the agreed salary band";
const SUBJECT_PHRASE: &str = "Zephyrine-7741";
const ATTACHMENT_PHRASE: &str = "Halcyonette-3318 severance terms";
const ATTACHMENT_NAME: &str = "Marrowgate-terms.txt";

fn confidential_message(n: u32) -> Vec<u8> {
    use base64ct::{Base64, Encoding};
    let attachment = Base64::encode_string(format!("{ATTACHMENT_PHRASE} #{n}\r\n").as_bytes());
    format!(
        "From: HR Office <office@hr.corp.example>\r\n\
         To: Employee <employee@corp.example>\r\n\
         Subject: Review {SUBJECT_PHRASE} number {n}\r\n\
         Date: Thu, 03 Dec 2026 10:00:00 +0100\r\n\
         Message-ID: <hr-{n}@hr.corp.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\
         \r\n\
         --b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {BODY_PHRASE}, message {n}.\r\n\
         --b\r\n\
         Content-Type: text/plain; name=\"{ATTACHMENT_NAME}\"\r\n\
         Content-Disposition: attachment; filename=\"{ATTACHMENT_NAME}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {attachment}\r\n\
         --b--\r\n"
    )
    .into_bytes()
}

/// Every file below `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

fn policy_dir(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (name, text) in files {
        std::fs::write(policies.join(name), text).unwrap();
    }
    policies
}

const HASH_ONLY_POLICY: &str = r#"
[[rule]]
name = "hr-hash-only"
match = { envelope_to = "hr-archive@corp.example" }
mode = "hash-only"
withhold = ["subject", "attachment_names"]
retention = "7y"

[[rule]]
name = "hr-import"
match = { source = "import", from_domain = "hr.corp.example" }
mode = "hash-only"
withhold = ["subject", "attachment_names"]

[[rule]]
name = "everything-else"
"#;

fn json_of(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn hash_only_mode_writes_no_byte_of_the_message() {
    for backend in ["redb", "sled"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let policies = policy_dir(dir.path(), &[("50-hr.toml", HASH_ONLY_POLICY)]);
        let config = dir.path().join("mailnotary.toml");
        std::fs::write(
            &config,
            format!(
                "[policy]\ndir = {:?}\n[stamping]\nwindow_ms = 200\n[smtp]\naccept = [\"archive@localhost\", \"hr-archive@corp.example\"]\n",
                policies.display().to_string()
            ),
        )
        .unwrap();
        let global = ["--config", config.to_str().unwrap(), "--store", backend];
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();

        // One copy through SMTP to the daemon...
        let smtp_copy = outside.join("by-smtp.eml");
        std::fs::write(&smtp_copy, confidential_message(1)).unwrap();
        let daemon = Daemon::start(&data, &global);
        let sent = python_json(
            "smtp_send.py",
            &[
                "--port".to_string(),
                daemon.smtp.port().to_string(),
                "--rcpt".into(),
                "hr-archive@corp.example".into(),
                smtp_copy.display().to_string(),
            ],
        );
        assert_eq!(sent[0]["code"], 250, "{sent}");
        daemon.wait_stamped(Duration::from_secs(30));
        assert_eq!(daemon.stop().code(), Some(0));

        // ...and one imported by `ingest`.
        let imported = outside.join("imported.eml");
        std::fs::write(&imported, confidential_message(2)).unwrap();
        let mut args = global.to_vec();
        args.extend(["ingest", imported.to_str().unwrap()]);
        let out = mailnotary(&data, &args);
        assert!(out.status.success(), "{}", stderr(&out));

        let mut args = global.to_vec();
        args.extend(["lookup", "--all", "--json"]);
        let messages = json_of(&mailnotary(&data, &args));
        assert_eq!(messages.as_array().unwrap().len(), 2);
        for m in messages.as_array().unwrap() {
            assert_eq!(m["mode"], "hash-only", "{m}");
            assert_eq!(m["stored"], false);
            assert_eq!(m["subject"], Value::Null);
            assert_eq!(
                m["policy"]["withheld"],
                serde_json::json!(["subject", "attachment_names"])
            );
            assert!(
                m["parts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p.get("filename").is_none())
            );
            // What is not withheld is kept.
            assert_eq!(m["from"][0]["address"], "office@hr.corp.example");
        }

        // Not a byte of body, subject, attachment or its name anywhere
        // under the data directory: store, write-ahead log, keys, logs.
        use base64ct::{Base64, Encoding};
        let encoded = Base64::encode_string(format!("{ATTACHMENT_PHRASE} #1\r\n").as_bytes());
        for needle in [
            BODY_PHRASE,
            SUBJECT_PHRASE,
            ATTACHMENT_PHRASE,
            ATTACHMENT_NAME,
            encoded.as_str(),
        ] {
            let found = files_holding(&data, needle.as_bytes());
            assert!(found.is_empty(), "{backend}: {needle:?} is in {found:?}");
        }
        // The test can find what it searches for: the phrase is in the
        // daemon's folder beside it, in the copy sent.
        assert!(!files_holding(&outside, BODY_PHRASE.as_bytes()).is_empty());

        // Whoever holds the message can still prove it.
        for file in [&smtp_copy, &imported] {
            let mut args = global.to_vec();
            args.extend(["verify", file.to_str().unwrap(), "--json"]);
            let report = json_of(&mailnotary(&data, &args));
            assert_eq!(report["verified"], true, "{backend}: {report}");
        }
        // And export has no message to give, but all the evidence.
        let zip = dir.path().join("hr.zip");
        export_message(
            &data,
            &global,
            "hr-1@hr.corp.example",
            &zip,
            &dir.path().join("hr"),
        );
        let mut args = global.to_vec();
        args.extend([
            "verify",
            smtp_copy.to_str().unwrap(),
            "--bundle",
            zip.to_str().unwrap(),
        ]);
        let out = mailnotary(&data, &args);
        assert!(
            out.status.success(),
            "{backend}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn archive_mode_seals_the_bytes_and_export_gives_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("m.eml");
    std::fs::write(&file, confidential_message(3)).unwrap();
    let raw_sha = hex::encode(Sha256::digest(std::fs::read(&file).unwrap()));
    // The built-in default policy: archive everything for ten years.
    let out = mailnotary(&data, &["ingest", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = &json_of(&mailnotary(&data, &["lookup", "--all", "--json"]))[0];
    assert_eq!(m["mode"], "archive");
    assert_eq!(m["stored"], true);
    assert_eq!(m["policy"]["rule"], "archive-everything");
    assert_eq!(m["policy"]["retention"], "10y");
    assert_eq!(m["raw_sha256"], raw_sha);
    // The body is sealed; the subject stays readable in the record, as
    // lookup searches it (a rule that withholds it keeps it out).
    let found = files_holding(&data, BODY_PHRASE.as_bytes());
    assert!(found.is_empty(), "the body is in plain text in {found:?}");
    assert!(!files_holding(&data, SUBJECT_PHRASE.as_bytes()).is_empty());
    let key = data.join("keys/archive.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let zip = dir.path().join("b.zip");
    let unzipped = dir.path().join("b");
    export_message(&data, &[], "hr-3@hr.corp.example", &zip, &unzipped);
    let exported = std::fs::read(unzipped.join("messages/001.eml")).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&exported)),
        raw_sha,
        "export returns the exact bytes"
    );
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // A missing key: a clear error, and nothing is written.
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let second = dir.path().join("second.eml");
    std::fs::write(&second, confidential_message(4)).unwrap();
    for args in [
        vec!["ingest", second.to_str().unwrap()],
        vec![
            "export",
            "--message-id",
            "hr-3@hr.corp.example",
            "--out",
            zip.to_str().unwrap(),
        ],
    ] {
        let out = mailnotary(&data, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = stderr(&out);
        assert!(
            e.contains("archive key file") && e.contains("is missing") && e.contains("backup"),
            "{e}"
        );
    }
    assert!(!key.exists(), "no new key was made in its place");
    // A wrong key: the same.
    std::fs::write(&key, format!("{}\n", "11".repeat(32))).unwrap();
    let out = mailnotary(&data, &["ingest", second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds key"), "{}", stderr(&out));
    // Lookups need no key; the archive still holds one message, intact.
    assert_eq!(
        json_of(&mailnotary(&data, &["lookup", "--all", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    std::fs::write(&key, saved).unwrap();
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = mailnotary(&data, &["ingest", second.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn retention_purges_bytes_but_not_evidence_and_legal_hold_wins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let day = 86_400_000;
    let now = now_millis();
    let files: Vec<PathBuf> = (0..3)
        .map(|n| {
            let path = dir.path().join(format!("r{n}.eml"));
            std::fs::write(
                &path,
                format!(
                    "From: a@supplier.example\r\nSubject: quote {n}\r\nMessage-ID: <r{n}@t.example>\r\n\r\nPrice {n}.\r\n"
                ),
            )
            .unwrap();
            path
        })
        .collect();
    // The clock is injected: two messages arrived three days ago under a
    // one-day retention, one arrives now.
    {
        let archive = Archive::open(&data, &StoreOptions::default()).unwrap();
        let policy = Policy::parse_files(
            "test",
            vec![(
                "p.toml".into(),
                "[[rule]]\nname = \"one-day\"\nretention = \"1d\"\n".into(),
            )],
            &Known::default(),
        )
        .unwrap();
        archive.set_policy(Arc::new(policy));
        archive
            .use_archive_key(&data.join("keys/archive.key"))
            .unwrap();
        for (n, file) in files.iter().enumerate() {
            let received_at = if n < 2 { now - 3 * day } else { now };
            let envelope = Envelope {
                received_at,
                source: Source::Import {
                    path: file.display().to_string(),
                    mbox_index: None,
                },
            };
            archive
                .ingest(envelope, std::fs::read(file).unwrap())
                .unwrap();
        }
        archive.close();
    }
    let out = mailnotary(&data, &["stamp"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Thread of r0 under legal hold.
    let out = mailnotary(
        &data,
        &[
            "hold",
            "--thread",
            "<r0@t.example>",
            "on",
            "--reason",
            "supplier dispute 2026-17",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("is now under legal hold"),
        "{}",
        stdout(&out)
    );
    let out = mailnotary(&data, &["purge"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("purged the bytes of 1 message"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("1 expired message kept under legal hold"),
        "{}",
        stdout(&out)
    );

    let by_id = |mid: &str| -> Value {
        json_of(&mailnotary(
            &data,
            &["lookup", "--message-id", mid, "--json"],
        ))[0]
            .clone()
    };
    let (held, purged, recent) = (
        by_id("r0@t.example"),
        by_id("r1@t.example"),
        by_id("r2@t.example"),
    );
    assert_eq!(held["stored"], true);
    assert_eq!(held["legal_hold"], true);
    assert_eq!(purged["stored"], false);
    assert!(purged["purged_at"].is_string(), "{purged}");
    assert_eq!(purged["status"], "stamped", "the evidence stays");
    assert_eq!(recent["stored"], true);
    // The purged message still verifies from its receipt and evidence.
    let out = mailnotary(&data, &["verify", files[1].to_str().unwrap(), "--json"]);
    assert_eq!(json_of(&out)["verified"], true);
    let zip = dir.path().join("p.zip");
    export_message(&data, &[], "r1@t.example", &zip, &dir.path().join("p"));
    let out = mailnotary(
        &data,
        &[
            "verify",
            files[1].to_str().unwrap(),
            "--bundle",
            zip.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // Released: the next purge takes it.
    let out = mailnotary(&data, &["hold", "--thread", "<r0@t.example>", "off"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mailnotary(&data, &["purge"]);
    assert!(
        stdout(&out).contains("purged the bytes of 1 message"),
        "{}",
        stdout(&out)
    );
    assert_eq!(by_id("r0@t.example")["stored"], false);

    // The audit log has every step, in order.
    let log = json_of(&mailnotary(&data, &["audit", "--json"]));
    let steps: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["actor"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("hold-on", "operator"),
        ("purge", "retention"),
        ("hold-off", "operator"),
        ("purge", "retention"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(steps, expected, "{log}");
    assert_eq!(log[0]["detail"], "supplier dispute 2026-17");
    assert_eq!(log[1]["subject"], purged["receipt_id"]);

    // With the clock moved two days on, the recent message expires too.
    let archive = Archive::open(&data, &StoreOptions::default()).unwrap();
    let report = archive.purge(now + 2 * day).unwrap();
    assert_eq!(report.purged.len(), 1);
    assert_eq!(
        report.purged[0].to_string(),
        recent["receipt_id"].as_str().unwrap()
    );
    assert!(report.held.is_empty());
}

#[test]
fn a_hold_survives_a_merge_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let a = write(
        "a.eml",
        "Message-ID: <a@t.example>\r\nSubject: a\r\n\r\na\r\n",
    );
    let b = write(
        "b.eml",
        "Message-ID: <b@t.example>\r\nSubject: b\r\n\r\nb\r\n",
    );
    let out = mailnotary(&data, &["ingest", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Hold the thread of b, which has the higher number.
    let out = mailnotary(&data, &["hold", "--thread", "<b@t.example>", "on"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A reply to both merges the two threads into a's.
    let c = write(
        "c.eml",
        "Message-ID: <c@t.example>\r\nReferences: <a@t.example> <b@t.example>\r\nSubject: c\r\n\r\nc\r\n",
    );
    let out = mailnotary(&data, &["ingest", c.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let thread = json_of(&mailnotary(
        &data,
        &["lookup", "--thread", "<a@t.example>", "--json"],
    ));
    assert_eq!(thread.as_array().unwrap().len(), 3);
    assert!(
        thread
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["legal_hold"] == true),
        "{thread}"
    );
}

#[test]
fn every_kind_of_policy_error_stops_ingest_and_serve() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "not TOML",
            "[[rule]]\nname = \"x\"\nmode = \n",
            "10-bad.toml:3: ",
        ),
        (
            "an unknown key",
            "[[rule]]\nname = \"x\"\nretain = \"7y\"\n",
            "10-bad.toml:3: unknown key `retain`",
        ),
        (
            "an unknown action value",
            "[[rule]]\nname = \"x\"\nmode = \"hashonly\"\n",
            "10-bad.toml:3: unknown variant `hashonly`",
        ),
        (
            "a bad retention",
            "[[rule]]\nname = \"x\"\nretention = \"ten years\"\n",
            "10-bad.toml:3: key retention",
        ),
        (
            "no catch-all",
            "[[rule]]\nname = \"x\"\nmatch = { source = \"smtp\" }\n",
            "10-bad.toml:1: no catch-all rule",
        ),
        (
            "an unknown TSA",
            "[[rule]]\nname = \"x\"\ntsa = [\"accredited\"]\n",
            "10-bad.toml:3: key tsa: \"accredited\"",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.eml");
    std::fs::write(
        &file,
        "Subject: x\r\nMessage-ID: <x@t.example>\r\n\r\nx\r\n",
    )
    .unwrap();
    for (what, text, expected) in cases {
        let case = dir.path().join(what.replace(' ', "-"));
        let policies = policy_dir(&case, &[("10-bad.toml", text)]);
        let data = case.join("data");
        let out = mailnotary(
            &data,
            &[
                "--policy-dir",
                policies.to_str().unwrap(),
                "ingest",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{what}");
        let e = stderr(&out);
        assert!(
            e.contains("policy error: ") && e.contains(expected),
            "{what}: {e}"
        );
        assert!(
            e.contains(&policies.display().to_string()),
            "{what}: the file is named: {e}"
        );
        let out = mailnotary(&data, &["lookup", "--all"]);
        assert_eq!(out.status.code(), Some(1), "{what}: nothing was stored");

        // serve refuses to start, before it listens.
        let out = Command::new(env!("CARGO_BIN_EXE_mailnotary"))
            .args([
                "--data",
                data.to_str().unwrap(),
                "--policy-dir",
                policies.to_str().unwrap(),
            ])
            .args(["serve", "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}: {}", stdout(&out));
        assert!(stderr(&out).contains(expected), "{what}: {}", stderr(&out));
        assert!(!stdout(&out).contains("listening"), "{what}");
    }
}

#[test]
fn policy_test_says_which_rule_applies_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policies = policy_dir(dir.path(), &[("50-hr.toml", HASH_ONLY_POLICY)]);
    let file = dir.path().join("m.eml");
    std::fs::write(&file, confidential_message(5)).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--policy-dir",
            policies.to_str().unwrap(),
            "policy",
            "test",
            file.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = mailnotary(&data, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let text = run(&["--envelope-to", "HR-Archive@corp.example"]);
    assert!(
        text.contains("rule \"hr-hash-only\" (") && text.contains("50-hr.toml:2) applies"),
        "{text}"
    );
    assert!(
        text.contains(
            "envelope_to: \"hr-archive@corp.example\" matches \"HR-Archive@corp.example\""
        ),
        "{text}"
    );
    assert!(
        text.contains("mode: hash-only") && text.contains("withhold: subject, attachment_names"),
        "{text}"
    );
    let text = run(&[]);
    assert!(
        text.contains("rule \"hr-hash-only\"")
            && text.contains("does not match: envelope_to: the message has no envelope_to"),
        "{text}"
    );
    assert!(
        text.contains("rule \"hr-import\"") && text.contains("applies"),
        "{text}"
    );
    let text = run(&["--source", "imap", "--imap-account", "sales"]);
    assert!(
        text.contains("rule \"everything-else\"") && text.contains("no match table"),
        "{text}"
    );
    let report: Value = serde_json::from_str(&run(&["--json"])).unwrap();
    assert_eq!(report["rule"], "hr-import");
    assert_eq!(report["tried"].as_array().unwrap().len(), 2);
}

/// An external TSA for the rules that choose one: `mailnotary tsa serve`
/// with its own data directory.
struct TsaServer {
    child: std::process::Child,
    url: String,
    ca: PathBuf,
}

impl TsaServer {
    fn start(dir: &Path) -> TsaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join("tsa-data");
        let child = Command::new(env!("CARGO_BIN_EXE_mailnotary"))
            .args(["--data", data.to_str().unwrap(), "tsa", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tsa serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        TsaServer {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            ca: data.join("keys/ca.cert.pem"),
        }
    }
}

impl Drop for TsaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rules_choose_the_tsa_and_write_their_statement_into_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tsa = TsaServer::start(dir.path());
    let policies = policy_dir(
        dir.path(),
        &[(
            "10-suppliers.toml",
            r#"
[[rule]]
name = "supplier-mail"
match = { from_domain = "*.example.cn" }
tsa = ["accredited"]
withhold = ["subject"]
statement = "Kept by purchasing as a record of supplier correspondence."

[[rule]]
name = "rest"
"#,
        )],
    );
    let config = dir.path().join("mailnotary.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\ndir = {:?}\n\n[[tsa]]\nname = \"builtin\"\nurl = \"builtin\"\n\n[[tsa]]\nname = \"accredited\"\nurl = {:?}\nca_file = {:?}\n",
            policies.display().to_string(),
            tsa.url,
            tsa.ca.display().to_string()
        ),
    )
    .unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let supplier = write(
        "s.eml",
        "From: sales@huarui.example.cn\r\nSubject: Price list Quartzvale-88\r\nMessage-ID: <s@huarui.example.cn>\r\n\r\nUSD 41.50\r\n",
    );
    let other = write(
        "o.eml",
        "From: a@corp.example\r\nSubject: lunch\r\nMessage-ID: <o@corp.example>\r\n\r\nnoon\r\n",
    );
    let global = ["--config", config.to_str().unwrap()];
    let mut args = global.to_vec();
    args.extend([
        "ingest",
        supplier.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    let out = mailnotary(&data, &args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // Two TSA choices: two batches, each by its TSA.
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("stamped 2 messages in 2 batches"), "{said}");
    let mut args = global.to_vec();
    args.extend(["lookup", "--all", "--json"]);
    let messages = json_of(&mailnotary(&data, &args));
    let find = |mid: &str| {
        messages
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["message_id"] == mid)
            .unwrap()
            .clone()
    };
    let (s, o) = (find("s@huarui.example.cn"), find("o@corp.example"));
    assert!(s["tsa"].as_str().unwrap().contains("accredited"), "{s}");
    assert!(o["tsa"].as_str().unwrap().contains("built-in"), "{o}");
    assert_eq!(s["policy"]["rule"], "supplier-mail");
    assert_eq!(s["subject"], Value::Null);

    // The receipt carries the statement and not the subject; OpenSSL
    // verifies it and outputs exactly that content.
    let zip = dir.path().join("s.zip");
    let unzipped = dir.path().join("s");
    export_message(&data, &global, "s@huarui.example.cn", &zip, &unzipped);
    let content = std::fs::read(unzipped.join("receipts/001.der")).unwrap();
    let has = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
    assert!(has(
        b"Kept by purchasing as a record of supplier correspondence."
    ));
    assert!(has(b"supplier-mail"));
    assert!(
        !has(b"Quartzvale-88"),
        "the withheld subject is not in the receipt"
    );
    if have("openssl") {
        let output = openssl_receipt_content(
            &unzipped.join("receipts/001.p7s"),
            &data.join("keys/ca.cert.pem"),
        );
        assert_eq!(output, content);
    } else {
        skip("receipt statement with OpenSSL", "openssl is not installed");
    }
}

/// Postfix's smtp-sink on `port`, writing each message it receives into
/// `dump`.
fn smtp_sink(port: u16, dump: &Path) -> std::process::Child {
    std::fs::create_dir_all(dump).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dump, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut cmd = Command::new("/usr/sbin/smtp-sink");
    // As root, smtp-sink must be told whom to run as.
    if running_as_root() {
        cmd.args(["-u", "nobody"]);
    }
    let child = cmd
        .arg("-d")
        .arg(format!("{}/%M.", dump.display()))
        .arg(format!("127.0.0.1:{port}"))
        .arg("10")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Whether this process runs as root (from `id -u`, without libc).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn notifications_wait_for_the_smarthost_and_carry_a_receipt_openssl_accepts() {
    let test = "receipt notifications";
    if !Path::new("/usr/sbin/smtp-sink").exists() {
        return skip(
            test,
            "Postfix's smtp-sink is not installed (Debian package postfix)",
        );
    }
    if !have("openssl") {
        return skip(test, "openssl is not installed");
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The smarthost's port, with nothing listening on it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policies = policy_dir(
        dir.path(),
        &[(
            "10-disputes.toml",
            "[[rule]]\nname = \"dispute-hold\"\nmatch = { envelope_to = \"disputes@corp.example\" }\n\
             legal_hold = true\nnotify = [\"legal@corp.example\"]\n\n[[rule]]\nname = \"rest\"\n",
        )],
    );
    let config = dir.path().join("mailnotary.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\ndir = {:?}\n[stamping]\nwindow_ms = 200\n[smtp]\naccept = [\"archive@localhost\", \"disputes@corp.example\"]\n\
             [notify]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"mailnotary@corp.example\"\nretry_secs = 1\ntimeout_secs = 5\n",
            policies.display().to_string()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let file = dir.path().join("d.eml");
    std::fs::write(
        &file,
        "From: sales@huarui.example.cn\r\nTo: buyer@corp.example\r\nSubject: We never agreed to 38.00\r\n\
         Message-ID: <dispute-1@huarui.example.cn>\r\n\r\nOur price was USD 41.50.\r\n",
    )
    .unwrap();
    let sent = python_json(
        "smtp_send.py",
        &[
            "--port".to_string(),
            daemon.smtp.port().to_string(),
            "--rcpt".into(),
            "disputes@corp.example".into(),
            file.display().to_string(),
        ],
    );
    assert_eq!(
        sent[0]["code"], 250,
        "ingest does not wait for the smarthost: {sent}"
    );
    daemon.wait_stamped(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log_text().contains("receipt notification failed") {
        assert!(Instant::now() < deadline, "{}", daemon.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(daemon.health()["notifications_queued"], 1);
    // The message's thread went under legal hold by the rule.
    let m = &json_of(&mailnotary(&data, &["lookup", "--all", "--json"]))[0];
    assert_eq!(m["legal_hold"], true);
    assert!(
        sent[0]["reply"]
            .as_str()
            .unwrap()
            .contains(m["receipt_id"].as_str().unwrap())
    );

    // The smarthost comes back: the notification goes out.
    let dump = dir.path().join("sink");
    let mut sink = smtp_sink(port, &dump);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mail = loop {
        if let Some(entry) = std::fs::read_dir(&dump).unwrap().flatten().next() {
            // smtp-sink writes the file as the data arrives; wait for the end.
            std::thread::sleep(Duration::from_millis(300));
            break entry.path();
        }
        assert!(
            Instant::now() < deadline,
            "no notification arrived: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = sink.kill();
    let _ = sink.wait();
    let text = std::fs::read_to_string(&mail).unwrap();
    assert!(text.contains("X-Rcpt-Args: <legal@corp.example>"), "{text}");
    let receipt_id = m["receipt_id"].as_str().unwrap();
    let parts_dir = dir.path().join("parts");
    std::fs::create_dir_all(&parts_dir).unwrap();
    let parts = python_json(
        "parts_oracle.py",
        &[
            "--save".to_string(),
            parts_dir.display().to_string(),
            mail.display().to_string(),
        ],
    );
    let parts = parts[mail.display().to_string()]
        .as_array()
        .unwrap()
        .clone();
    let body = std::fs::read_to_string(parts[0]["saved"].as_str().unwrap()).unwrap();
    assert!(
        body.contains("存证回执") && body.contains("This is the receipt"),
        "{body}"
    );
    assert!(
        body.contains(receipt_id) && body.contains(m["raw_sha256"].as_str().unwrap()),
        "{body}"
    );
    let p7s = parts
        .iter()
        .find(|p| p["filename"] == format!("receipt-{receipt_id}.p7s"))
        .unwrap_or_else(|| panic!("no receipt attached: {parts:?}"));
    assert!(
        parts
            .iter()
            .any(|p| p["filename"] == format!("evidence-{receipt_id}.ers"))
    );
    let content = openssl_receipt_content(
        Path::new(p7s["saved"].as_str().unwrap()),
        &data.join("keys/ca.cert.pem"),
    );
    // The content OpenSSL returns names this message.
    assert!(
        content
            .windows(receipt_id.len())
            .any(|w| w == receipt_id.as_bytes())
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.health()["notifications_queued"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the sent notification stays queued"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = json_of(&mailnotary(&data, &["audit", "--json"]));
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["hold-on", "notified"], "{log}");
}

#[test]
fn a_sled_store_seals_too() {
    // The archive key and sealed blobs do not depend on the engine.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let archive = Archive::open(
        &data,
        &StoreOptions {
            backend: BackendKind::Sled,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    archive
        .use_archive_key(&data.join("keys/archive.key"))
        .unwrap();
    let raw = confidential_message(9);
    let id = archive
        .ingest(
            Envelope {
                received_at: now_millis(),
                source: Source::Import {
                    path: "x.eml".into(),
                    mbox_index: None,
                },
            },
            raw.clone(),
        )
        .unwrap()
        .receipt_id();
    assert_eq!(archive.raw(&id).unwrap().unwrap(), raw);
    archive.close();
    assert!(files_holding(&data, BODY_PHRASE.as_bytes()).is_empty());
}
