// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Arbitrary bytes as what an SMTP client sends: one session against the
//! real listener (an archive in a temporary folder, loopback TCP), with
//! its write side closed after the input. Every line the listener sends
//! back must be an SMTP reply, and the session must end by itself.
//!
//! Run with `-detect_leaks=0`: the listener's threads allocate between
//! inputs, which libFuzzer's per-input leak check would blame on the input.
#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mailnotary::archive::Archive;
use mailnotary::config::SmtpConfig;
use mailnotary::smtp::{Counters, Settings, Shared};

/// The listener, with what must live as long as it: the folder, the
/// runtime and the stop signal. Kept in a static, so that they stay
/// reachable (LeakSanitizer counts a leaked box as a leak at exit).
struct Listener {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
    _stop: tokio::sync::watch::Sender<bool>,
}

static LISTENER: LazyLock<Listener> = LazyLock::new(|| {
    checks::prepare();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let archive = Archive::open(dir.path(), &Default::default()).expect("an archive");
    let policy = mailnotary::policy::Policy::parse_files(
        "fuzz",
        vec![(
            "fuzz.toml".into(),
            "[[rule]]\nname = \"hash-only\"\nmode = \"hash-only\"\n".into(),
        )],
        &Default::default(),
    )
    .expect("the fuzz policy");
    archive.set_policy(Arc::new(policy));
    let mut config = SmtpConfig::default();
    config.starttls = false;
    config.command_timeout_secs = 5;
    config.data_timeout_secs = 5;
    let settings = Settings::from_config(&config, "fuzz.example").expect("settings");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        settings,
        archive: Arc::new(archive),
        tls: None,
        counters: Counters::default(),
        stopping,
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    runtime.spawn(mailnotary::smtp::serve(shared, listener));
    Listener {
        addr,
        _dir: dir,
        _runtime: runtime,
        _stop: stop,
    }
});

fuzz_target!(|bytes: &[u8]| {
    let mut stream = TcpStream::connect(LISTENER.addr).expect("the listener accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a timeout");
    // The listener may close first (too many errors, QUIT): then the rest
    // of the input is simply not read.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "the session did not end within 20 s of the input's end"
        );
    }
    checks::smtp_answer(&answer);
});
