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
