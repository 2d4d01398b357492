// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod dns;
pub use dns::DnsServer;

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
    note_skip(test, why);
}

/// Says that a test did not run and why: on standard error, and in the file
/// named by MAILNOTARY_SKIP_LOG, which tests/run-all.sh lists at the end
/// (cargo hides the output of tests that pass).
pub fn note_skip(test: &str, why: &str) {
    use std::io::Write;
    eprintln!("SKIPPED {test}: {why}");
    if let Some(path) = std::env::var_os("MAILNOTARY_SKIP_LOG")
        && let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(file, "{test}: {why}");
    }
}

/// Whether a command exists on PATH.
pub fn have(command: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {command}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Checks a signed receipt (`.p7s`) with `openssl cms -verify` against the
/// CA file `ca`, fails the test when OpenSSL refuses it, and returns the
/// content OpenSSL puts out.
pub fn openssl_receipt_content(p7s: &Path, ca: &Path) -> Vec<u8> {
    let cms = Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-binary", "-in"])
        .arg(p7s)
        .arg("-CAfile")
        .arg(ca)
        .output()
        .expect("openssl runs");
    assert!(
        cms.status.success(),
        "openssl cms -verify {}: {}",
        p7s.display(),
        String::from_utf8_lossy(&cms.stderr)
    );
    cms.stdout
}

/// `mailnotary [global...] export --message-id ID --out ZIP`, which must
/// succeed, then the bundle unzipped into `dir`.
pub fn export_message(data: &Path, global: &[&str], message_id: &str, zip: &Path, dir: &Path) {
    let mut args = global.to_vec();
    args.extend(["export", "--message-id", message_id, "--out"]);
    args.push(zip.to_str().expect("a UTF-8 path"));
    let out = mailnotary(data, &args);
    assert!(out.status.success(), "export: {}", stderr(&out));
    zip::ZipArchive::new(std::fs::File::open(zip).expect("the bundle"))
        .expect("a zip file")
        .extract(dir)
        .expect("the bundle unzips");
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
    let content = std::fs::read(file("receipt_content")).expect("receipt content");
    assert_eq!(
        openssl_receipt_content(&file("receipt"), ca),
        content,
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

/// A running `mailnotary serve` on ephemeral ports; stopped when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub data: PathBuf,
    pub smtp: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    /// Standard error of the daemon (its log), written to this file.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `serve` on `data` with extra arguments (a `--config`, say)
    /// placed before the subcommand.
    pub fn start(data: &Path, global: &[&str]) -> Daemon {
        use std::io::{BufRead, BufReader};
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailnotary"))
            .arg("--data")
            .arg(data)
            .args(global)
            .args([
                "-vv",
                "serve",
                "--smtp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .current_dir(root())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("mailnotary serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut smtp, mut http) = (None, None);
        while smtp.is_none() || http.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!(
                    "serve ended before it listened: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            };
            if let Some(rest) = line.strip_prefix("smtp: listening on ") {
                smtp = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("http: listening on http://") {
                http = rest.split('/').next().and_then(|a| a.parse().ok());
            }
        }
        // The rest of stdout is read in the background, so the daemon
        // never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Daemon {
            child,
            data: data.to_path_buf(),
            smtp: smtp.unwrap(),
            http: http.unwrap(),
            log,
        }
    }

    /// Sends a signal to the daemon (`TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops with SIGTERM and returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    /// Kills with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// `GET /healthz` as JSON.
    pub fn health(&self) -> serde_json::Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.http).unwrap();
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("healthz: {e}: {text}"))
    }

    /// Waits until nothing is pending (the stamper caught up).
    pub fn wait_stamped(&self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let health = self.health();
            if health["pending"] == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still pending after {timeout:?}: {health}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Dovecot (tests/support/dovecot.sh) on a free loopback port,
/// with one user, tester / secret; stopped when dropped.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The implicit-TLS port, when started with [`Dovecot::start_tls`].
    pub imaps_port: Option<u16>,
    tls: bool,
}

impl Dovecot {
    pub fn start() -> Result<Dovecot, String> {
        Dovecot::start_with(false)
    }

    /// Also offers STARTTLS on `port` and implicit TLS on `imaps_port`,
    /// with a certificate for 127.0.0.1 from the CA in [`Dovecot::ca`].
    pub fn start_tls() -> Result<Dovecot, String> {
        Dovecot::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Dovecot, String> {
        // Under /tmp: Dovecot's unprivileged processes must be able to
        // traverse every parent folder.
        let dir = tempfile::Builder::new()
            .prefix("mailnotary-dovecot-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let mut dovecot = Dovecot {
            dir,
            port: 0,
            imaps_port: None,
            tls,
        };
        dovecot.run("start", None)?;
        let port = |file: &str| -> Result<u16, String> {
            std::fs::read_to_string(dovecot.dir.path().join(file))
                .map_err(|e| format!("{file}: {e}"))?
                .trim()
                .parse()
                .map_err(|e| format!("{file}: {e}"))
        };
        dovecot.port = port("port")?;
        if tls {
            dovecot.imaps_port = Some(port("imaps-port")?);
        }
        Ok(dovecot)
    }

    /// The CA certificate (PEM) of a TLS instance's server certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    fn run(&self, what: &str, port: Option<u16>) -> Result<(), String> {
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("tests/support/dovecot.sh"))
            .arg(what)
            .arg(self.dir.path())
            .stdin(std::process::Stdio::null());
        if let Some(port) = port {
            cmd.env("PORT", port.to_string());
        }
        if self.tls {
            cmd.env("TLS", "1");
            if let Some(port) = self.imaps_port {
                cmd.env("IMAPS_PORT", port.to_string());
            }
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "dovecot.sh {what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Stops the server (its mail stays).
    pub fn stop(&self) {
        self.run("stop", None).unwrap();
    }

    /// Starts it again on the same port with the same mail.
    pub fn restart(&self) {
        self.run("start", Some(self.port)).unwrap();
    }

    /// Runs tests/support/imap_tool.py against this server.
    pub fn tool(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--port".to_string(), self.port.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        python_json("imap_tool.py", &all)
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.run("stop", None);
    }
}

impl DnsServer {
    /// Starts dnsmasq in `dir` with `records` (name, TXT text); `None`
    /// (with the test skipped) when dnsmasq is not installed.
    pub fn start(test: &str, dir: &Path, records: &[(String, String)]) -> Option<DnsServer> {
        match DnsServer::launch(dir, records) {
            Ok(server) => Some(server),
            Err(why) => {
                skip(test, &why);
                None
            }
        }
    }
}
