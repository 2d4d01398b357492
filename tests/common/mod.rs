// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/corpus` beside the repository, when present.
pub fn shared_corpus() -> Option<PathBuf> {
    let path = root().join("../shared/corpus");
    path.is_dir().then_some(path)
}

/// Runs the `mailnotary` binary with `--data data` and `args`.
pub fn mailnotary(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailnotary"))
        .arg("--data")
        .arg(data)
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("the mailnotary binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether interop tests must not skip (set by the test script once it
/// has installed the servers they need).
pub fn interop_required() -> bool {
    std::env::var_os("MAILNOTARY_REQUIRE_INTEROP").is_some_and(|v| v == "1")
}

/// Reports a skipped test, or fails it when interop is required.
pub fn skip(test: &str, why: &str) {
    if interop_required() {
        panic!("{test}: cannot run ({why}) but MAILNOTARY_REQUIRE_INTEROP=1");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// Whether a command exists on PATH.
pub fn have(command: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {command}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a helper script from `tests/support` with python3 and parses the
/// JSON it prints; fails the test with the script's error output otherwise.
pub fn python_json<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(root().join("tests/support").join(script))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script} printed no JSON: {e}"))
}

/// Debian's Bouncy Castle jars (packages libbcprov-java, libbcutil-java,
/// libbcpkix-java).
pub const BC_JARS: [&str; 3] = [
    "/usr/share/java/bcprov.jar",
    "/usr/share/java/bcutil.jar",
    "/usr/share/java/bcpkix.jar",
];

/// Why the Bouncy Castle checkers cannot run here, or `None` when they can.
pub fn bouncy_castle_missing() -> Option<String> {
    if !have("java") {
        return Some("java is not installed (Debian package default-jre-headless)".into());
    }
    BC_JARS
        .iter()
        .find(|j| !Path::new(j).exists())
        .map(|jar| format!("{jar} is missing (Debian package libbcpkix-java)"))
}

/// Runs a Java checker from `tests/support` with Bouncy Castle on the class
/// path.
pub fn bouncy_castle<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> Output {
    Command::new("java")
        .arg("-cp")
        .arg(BC_JARS.join(":"))
        .arg(root().join("tests/support").join(program))
        .args(args)
        .output()
        .expect("java runs")
}

/// The path of dispute message number `n` (1 to 9) in `sample-mails/dispute`.
pub fn dispute_file(n: u32) -> String {
    let prefix = format!("{n:02}-");
    std::fs::read_dir(root().join("sample-mails/dispute"))
        .expect("sample-mails/dispute exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".eml"))
        })
        .unwrap_or_else(|| panic!("no dispute message {n}"))
        .display()
        .to_string()
}

/// OpenSSL's checks of one message of an unzipped bundle in `dir`, where
/// `entry` is its manifest entry: `openssl cms -verify` accepts the receipt
/// against `ca` and outputs exactly receipts/NNN.der, and `openssl ts
/// -verify` accepts the batch token for `root` (hex). Panics with OpenSSL's
/// words otherwise.
pub fn openssl_accepts_entry(dir: &Path, entry: &serde_json::Value, root: &str, ca: &Path) {
    let file = |key: &str| dir.join(entry[key].as_str().expect("manifest field"));
    let n = entry["n"].as_str().unwrap_or("?");
    let cms = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-binary", "-in"])
        .arg(file("receipt"))
        .arg("-CAfile")
        .arg(ca)
        .output()
        .expect("openssl runs");
    assert!(
        cms.status.success(),
        "{n}: openssl cms -verify: {}",
        String::from_utf8_lossy(&cms.stderr)
    );
    let content = std::fs::read(file("receipt_content")).expect("receipt content");
    assert_eq!(
        cms.stdout, content,
        "{n}: cms -verify outputs the receipt content"
    );
    let ts = Command::new("openssl")
        .args(["ts", "-verify", "-token_in", "-digest", root, "-in"])
        .arg(file("token"))
        .arg("-CAfile")
        .arg(ca)
        .output()
        .expect("openssl runs");
    assert!(
        ts.status.success() && String::from_utf8_lossy(&ts.stdout).contains("Verification: OK"),
        "{n}: openssl ts -verify: {}{}",
        String::from_utf8_lossy(&ts.stdout),
        String::from_utf8_lossy(&ts.stderr)
    );
}
