// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The IMAP folder watcher against a real Dovecot (Debian's dovecot-imapd),
//! started by the tests with a configuration of their own on loopback,
//! while mail clients' actions are played with Python's imaplib
//! (tests/support/imap_tool.py): APPEND picked up through IDLE or polling,
//! a large folder resumed after kill -9 and across a server restart,
//! UIDVALIDITY changes, a refused password, untouched flags, and the same
//! message arriving by SMTP and through IMAP.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, Dovecot, mailnotary, skip, stderr, stdout};
use serde_json::Value;

fn dovecot(test: &str) -> Option<Dovecot> {
    if !Path::new("/usr/sbin/dovecot").exists() {
        skip(
            test,
            "Dovecot is not installed (Debian package dovecot-imapd)",
        );
        return None;
    }
    Some(Dovecot::start().unwrap_or_else(|e| panic!("starting Dovecot: {e}")))
}

/// A configuration watching `folders` of the test Dovecot; `extra` goes
/// into the account's table.
fn config(dir: &Path, dovecot: &Dovecot, folders: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let secret = dir.join("imap-password");
    std::fs::write(&secret, "secret\n").unwrap();
    let path = dir.join("mailnotary.toml");
    std::fs::write(
        &path,
        format!(
            "[stamping]\nwindow_ms = 200\n\n[[imap]]\nname = \"dovecot\"\nhost = \"127.0.0.1\"\n\
             port = {}\ntls = \"none\"\nuser = \"tester\"\npassword_file = {:?}\n\
             folders = {folders}\n{extra}\n",
            dovecot.port,
            secret.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn all_messages(data: &Path) -> Vec<Value> {
    let out = mailnotary(data, &["lookup", "--all", "--json"]);
    if out.status.code() == Some(1) {
        return Vec::new();
    }
    assert!(out.status.success(), "lookup: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The account's status from /healthz.
fn account(daemon: &Daemon) -> Value {
    daemon.health()["imap"]["dovecot"].clone()
}

/// Waits until `done` holds for the stored messages.
fn wait_messages(data: &Path, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let messages = all_messages(data);
        if done(&messages) {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "not reached within {timeout:?}: {} messages",
            messages.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn digests(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn idle_picks_up_new_mail_and_flags_stay_untouched() {
    let Some(dovecot) = dovecot("IMAP IDLE") else {
        return;
    };
    dovecot.tool(&["create", "Archive"]);
    let before = digests(&dovecot.tool(&["append", "Archive", "--count", "3", "--tag", "old"]));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A poll interval far longer than the test: only IDLE can be quick.
    let config = config(dir.path(), &dovecot, "[\"Archive\"]", "poll_interval = 600");
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    wait_messages(&data, Duration::from_secs(30), |m| m.len() == 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while account(&daemon)["state"] != "idle" {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(50));
    }

    let appended = Instant::now();
    let new = digests(&dovecot.tool(&["append", "Archive", "--tag", "new", "--start", "7"]));
    let messages = wait_messages(&data, Duration::from_secs(10), |m| {
        m.iter().any(|m| m["raw_sha256"] == new[0])
    });
    eprintln!("IDLE: stored {:?} after APPEND", appended.elapsed());
    daemon.wait_stamped(Duration::from_secs(30));

    // Stored byte for byte, with its IMAP origin in the receipt's source.
    let stored: Vec<&str> = messages
        .iter()
        .map(|m| m["raw_sha256"].as_str().unwrap())
        .collect();
    for d in before.iter().chain(&new) {
        assert!(stored.contains(&d.as_str()), "{d} not stored");
    }
    let m = messages.iter().find(|m| m["raw_sha256"] == new[0]).unwrap();
    let source = &m["source"];
    assert_eq!(source["kind"], "imap");
    assert_eq!(source["account"], "dovecot");
    assert_eq!(source["folder"], "Archive");
    assert_eq!(source["server"], format!("127.0.0.1:{}", dovecot.port));
    assert_eq!(source["uid"], 4);
    let validity = dovecot.tool(&["uidvalidity", "Archive"]);
    assert_eq!(source["uid_validity"], validity);

    // The receipt and evidence verify, through an exported bundle.
    let zip = dir.path().join("m.zip");
    let out = mailnotary(
        &data,
        &[
            "export",
            "--message-id",
            "new-7@imap.test",
            "--out",
            zip.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mailnotary(&data, &["verify", zip.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // Read-only: no message got \Seen or any other flag from the watcher.
    let flags = dovecot.tool(&["flags", "Archive"]);
    for (uid, list) in flags.as_object().unwrap() {
        for flag in list.as_array().unwrap() {
            assert_eq!(flag, "\\Recent", "UID {uid} has {flag}");
        }
    }
    assert_eq!(flags.as_object().unwrap().len(), 4);

    // A new UIDVALIDITY (the folder made again with the same messages and
    // one more): one new message, the others recognized as sightings.
    let plus = digests(&dovecot.tool(&["recreate", "Archive", "--plus", "1", "--tag", "after"]));
    let messages = wait_messages(&data, Duration::from_secs(15), |m| m.len() == 5);
    assert!(messages.iter().any(|m| m["raw_sha256"] == plus[0]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while account(&daemon)["sightings"] != 4 {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(50));
    }
    let sightings: u64 = all_messages(&data)
        .iter()
        .map(|m| m["sightings"].as_u64().unwrap())
        .sum();
    assert_eq!(sightings, 4);
    let status = account(&daemon);
    assert_eq!(
        status["folders"]["Archive"]["uid_validity"],
        dovecot.tool(&["uidvalidity", "Archive"])
    );
    assert_eq!(status["folders"]["Archive"]["last_uid"], 5);
}

#[test]
fn without_idle_the_folder_is_polled() {
    let Some(dovecot) = dovecot("IMAP polling") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(
        dir.path(),
        &dovecot,
        "[\"INBOX\"]",
        "idle = false\npoll_interval = 2",
    );
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while account(&daemon)["state"] != "polling" {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(50));
    }
    let appended = Instant::now();
    let new = digests(&dovecot.tool(&["append", "INBOX", "--tag", "polled"]));
    wait_messages(&data, Duration::from_secs(10), |m| {
        m.iter().any(|m| m["raw_sha256"] == new[0])
    });
    eprintln!(
        "polling every 2 s: stored {:?} after APPEND",
        appended.elapsed()
    );
    // `status` through the daemon names the account's state and folder.
    let out = mailnotary(&data, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("imap dovecot (127.0.0.1:") && text.contains("INBOX: UIDVALIDITY"),
        "{text}"
    );
}

#[test]
fn several_folders_idle_on_the_first_and_poll_the_others() {
    let Some(dovecot) = dovecot("IMAP several folders") else {
        return;
    };
    dovecot.tool(&["create", "Sent"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(
        dir.path(),
        &dovecot,
        "[\"INBOX\", \"Sent\"]",
        "poll_interval = 3",
    );
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while account(&daemon)["state"] != "idle" {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first folder is watched with IDLE, the second is checked every
    // poll_interval: both arrive, and each is recorded with its folder.
    let inbox = digests(&dovecot.tool(&["append", "INBOX", "--tag", "first-folder"]));
    let sent = digests(&dovecot.tool(&["append", "Sent", "--tag", "second-folder"]));
    let messages = wait_messages(&data, Duration::from_secs(15), |m| m.len() == 2);
    for (digest, folder) in [(&inbox[0], "INBOX"), (&sent[0], "Sent")] {
        let m = messages
            .iter()
            .find(|m| m["raw_sha256"] == *digest)
            .unwrap();
        assert_eq!(m["source"]["folder"], folder);
    }
}

#[test]
fn a_large_folder_resumes_after_kill_9_and_a_server_restart() {
    let Some(dovecot) = dovecot("IMAP resume") else {
        return;
    };
    let total = 1000;
    dovecot.tool(&["create", "Big"]);
    dovecot.tool(&[
        "append",
        "Big",
        "--count",
        &total.to_string(),
        "--tag",
        "big",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path(), &dovecot, "[\"B*\"]", "fetch_chunk = 25");
    let global = ["--config", config.to_str().unwrap()];

    // First start: kill -9 in the middle of the first sync.
    let daemon = Daemon::start(&data, &global);
    let last_uid = |d: &Daemon| {
        account(d)["folders"]["Big"]["last_uid"]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_uid(&daemon) < 100 {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(2));
    }
    daemon.kill9();
    // The checkpoint the store kept: the sync was cut in the middle.
    let out = mailnotary(&data, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], false);
    let checkpoint = status["imap_checkpoints"][0]["last_uid"].as_u64().unwrap();
    assert!((100..total as u64).contains(&checkpoint), "{status}");

    // Second start: it resumes from the checkpoint; Dovecot is stopped
    // and started again in the middle.
    let daemon = Daemon::start(&data, &global);
    let deadline = Instant::now() + Duration::from_secs(60);
    while last_uid(&daemon) < 400 {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(2));
    }
    dovecot.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let down = account(&daemon);
    assert_eq!(down["state"], "retrying", "{down}");
    assert!(
        down["error"].as_str().unwrap().contains("127.0.0.1"),
        "{down}"
    );
    dovecot.restart();

    let messages = wait_messages(&data, Duration::from_secs(90), |m| m.len() >= total);
    daemon.wait_stamped(Duration::from_secs(60));
    let messages = if messages.iter().any(|m| m["status"] != "stamped") {
        all_messages(&data)
    } else {
        messages
    };
    assert_eq!(messages.len(), total, "no message twice");
    let mut uids: Vec<u64> = messages
        .iter()
        .map(|m| m["source"]["uid"].as_u64().unwrap())
        .collect();
    uids.sort_unstable();
    assert_eq!(uids, (1..=total as u64).collect::<Vec<_>>());
    assert!(
        messages
            .iter()
            .all(|m| m["status"] == "stamped" && m["sightings"] == 0)
    );
    eprintln!(
        "resume: killed with UID {checkpoint} stored; all {total} stored once after restarts"
    );
    let out = mailnotary(&data, &["check"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_refused_password_is_reported_and_smtp_keeps_working() {
    let Some(dovecot) = dovecot("IMAP wrong password") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path(), &dovecot, "[\"INBOX\"]", "");
    std::fs::write(dir.path().join("imap-password"), "not-the-password\n").unwrap();
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while account(&daemon)["failures"].as_u64().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = account(&daemon);
    assert_eq!(status["state"], "retrying");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("refused the login of \"tester\""), "{error}");
    assert!(daemon.log_text().contains("IMAP account failed; retrying"));
    assert!(
        !daemon.log_text().contains("not-the-password"),
        "the password is in the log"
    );

    // Meanwhile the SMTP listener stores mail as usual.
    let file = dir.path().join("m.eml");
    std::fs::write(
        &file,
        "Subject: via smtp\r\nMessage-ID: <smtp@imap.test>\r\n\r\nhello\r\n",
    )
    .unwrap();
    let sent = common::python_json(
        "smtp_send.py",
        &[
            "--port".to_string(),
            daemon.smtp.port().to_string(),
            file.display().to_string(),
        ],
    );
    assert_eq!(sent[0]["code"], 250, "{sent}");
}

#[test]
fn the_same_message_by_smtp_and_imap_is_stored_once() {
    let Some(dovecot) = dovecot("IMAP and SMTP") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config(dir.path(), &dovecot, "[\"INBOX\"]", "");
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);
    let file = dir.path().join("bcc.eml");
    std::fs::write(
        &file,
        "From: Buyer <buyer@example.com>\r\nTo: sales@supplier.example\r\nSubject: price 41.50\r\n\
         Message-ID: <both@imap.test>\r\n\r\nConfirmed at CNY 41.50 per unit.\r\n",
    )
    .unwrap();
    // The company's MTA sends the BCC copy to the archive address...
    let sent = common::python_json(
        "smtp_send.py",
        &[
            "--port".to_string(),
            daemon.smtp.port().to_string(),
            file.display().to_string(),
        ],
    );
    assert_eq!(sent[0]["code"], 250, "{sent}");
    // ...and the same message lands in the watched mailbox.
    let appended = digests(&dovecot.tool(&["append", "INBOX", "--file", file.to_str().unwrap()]));
    assert_eq!(appended[0], sent[0]["sha256"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    while account(&daemon)["sightings"] != 1 {
        assert!(Instant::now() < deadline, "{}", account(&daemon));
        std::thread::sleep(Duration::from_millis(50));
    }
    let messages = all_messages(&data);
    assert_eq!(messages.len(), 1, "stored once");
    assert_eq!(
        messages[0]["source"]["kind"], "smtp",
        "the first arrival is the message"
    );
    assert_eq!(
        messages[0]["sightings"], 1,
        "the IMAP arrival is its sighting"
    );
    // Both arrivals are on record, each with its own source.
    let seen = messages[0]["seen"].as_array().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["source"]["kind"], "smtp");
    assert_eq!(seen[0]["source"]["rcpt_to"][0], "archive@localhost");
    assert_eq!(seen[1]["source"]["kind"], "imap");
    assert_eq!(seen[1]["source"]["folder"], "INBOX");
    assert_eq!(seen[1]["source"]["uid"], 1);
}

#[test]
fn implicit_tls_and_starttls_with_a_private_ca_and_a_bad_certificate_alone() {
    let test = "IMAP over TLS";
    if !Path::new("/usr/sbin/dovecot").exists() || !common::have("openssl") {
        return skip(test, "needs Dovecot (dovecot-imapd) and openssl");
    }
    let dovecot = Dovecot::start_tls().unwrap_or_else(|e| panic!("starting Dovecot: {e}"));
    dovecot.tool(&["create", "Implicit"]);
    dovecot.tool(&["create", "Starttls"]);
    let a = digests(&dovecot.tool(&["append", "Implicit", "--tag", "implicit"]));
    let b = digests(&dovecot.tool(&["append", "Starttls", "--tag", "starttls"]));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = dovecot.ca().display().to_string();
    let imaps = dovecot.imaps_port.unwrap();
    let account = |name: &str, port: u16, tls: &str, folder: &str, extra: &str| {
        format!(
            "[[imap]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
             user = \"tester\"\npassword = \"secret\"\nfolders = [\"{folder}\"]\n{extra}\n"
        )
    };
    let config = dir.path().join("mailnotary.toml");
    std::fs::write(
        &config,
        [
            "[stamping]\nwindow_ms = 200\n".to_string(),
            account(
                "implicit",
                imaps,
                "implicit",
                "Implicit",
                &format!("ca_file = {ca:?}"),
            ),
            account(
                "starttls",
                dovecot.port,
                "starttls",
                "Starttls",
                &format!("ca_file = {ca:?}"),
            ),
            // The public roots do not know the test CA: this account fails
            // on its own.
            account("untrusted", imaps, "implicit", "INBOX", ""),
        ]
        .join("\n"),
    )
    .unwrap();
    let daemon = Daemon::start(&data, &["--config", config.to_str().unwrap()]);

    let messages = wait_messages(&data, Duration::from_secs(30), |m| m.len() == 2);
    for (digest, account, folder) in [
        (&a[0], "implicit", "Implicit"),
        (&b[0], "starttls", "Starttls"),
    ] {
        let m = messages
            .iter()
            .find(|m| m["raw_sha256"] == *digest)
            .unwrap();
        assert_eq!(m["source"]["account"], account);
        assert_eq!(m["source"]["folder"], folder);
    }
    let health = daemon.health();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut untrusted = health["imap"]["untrusted"].clone();
    while untrusted["failures"].as_u64().unwrap_or(0) < 1 {
        assert!(Instant::now() < deadline, "{untrusted}");
        std::thread::sleep(Duration::from_millis(100));
        untrusted = daemon.health()["imap"]["untrusted"].clone();
    }
    assert_eq!(untrusted["state"], "retrying");
    let error = untrusted["error"].as_str().unwrap();
    assert!(
        error.contains("TLS with 127.0.0.1") && error.contains("certificate"),
        "{error}"
    );
    for good in ["implicit", "starttls"] {
        let status = &daemon.health()["imap"][good];
        assert!(status["error"].is_null(), "{status}");
        assert_eq!(status["stored"], 1, "{status}");
    }
    // A password written in the configuration works, with a warning.
    assert!(
        daemon
            .log_text()
            .contains("the IMAP password is written in the configuration file"),
        "{}",
        daemon.log_text()
    );
    assert!(
        !daemon.log_text().contains("secret"),
        "the password is in the log"
    );
    daemon.wait_stamped(Duration::from_secs(30));
}
