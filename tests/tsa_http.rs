// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `mailnotary tsa serve` over real HTTP: requests made by `openssl ts
//! -query`, sent with curl, answered with responses that `openssl ts
//! -verify` accepts; a wrong media type refused; SIGTERM ends it cleanly.
// A panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{have, skip};

#[test]
fn openssl_and_curl_get_verifiable_timestamps_over_http() {
    let test = "openssl_and_curl_get_verifiable_timestamps_over_http";
    if !have("openssl") || !have("curl") {
        return skip(test, "needs openssl and curl");
    }
    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_mailnotary"))
        .arg("--data")
        .arg(data.path())
        .args(["tsa", "serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let url = first_line
        .trim()
        .strip_prefix("mailnotary TSA listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_string();

    let dir = data.path();
    let file = dir.join("quotation.pdf");
    std::fs::write(&file, b"%PDF-1.4 Q-2026-118 USD 1.85").unwrap();
    let request = dir.join("req.tsq");
    let response = dir.join("resp.tsr");
    let ok = Command::new("openssl")
        .args(["ts", "-query", "-sha256", "-cert", "-data"])
        .arg(&file)
        .arg("-out")
        .arg(&request)
        .status()
        .unwrap();
    assert!(ok.success());
    let curl = Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
        ])
        .arg(format!("@{}", request.display()))
        .arg("-o")
        .arg(&response)
        .arg("-w")
        .arg("%{content_type}")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "application/timestamp-reply"
    );
    let verify = Command::new("openssl")
        .args(["ts", "-verify", "-in"])
        .arg(&response)
        .arg("-queryfile")
        .arg(&request)
        .arg("-CAfile")
        .arg(dir.join("keys/ca.cert.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("Verification: OK"),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // Not a timestamp query: 415 with the expected media type named.
    let wrong = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "hello",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&wrong.stdout), "415");

    // SIGTERM: a clean exit.
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
