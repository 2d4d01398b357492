// SPDX-License-Identifier: Apache-2.0 OR MIT
//! A million messages: ingest throughput over time, memory, store size per
//! message, thread lookups at the end, and the time to reopen the store
//! after a kill -9 at that size; for archive mode (sealed blobs) and
//! hash-only mode, on redb and on sled.
//!
//! The messages are generated: sizes drawn from 1 to 20 KB (most near
//! 3 KB), in threads of one to twelve messages linked by In-Reply-To and
//! References, with receipts signed as they are stored (as `ingest` and
//! `serve` do). Stamping is measured by `bench/stamp`.
//!
//! `cargo bench --bench million`; `MAILNOTARY_BENCH_MESSAGES` (default
//! 1,000,000) and `MAILNOTARY_BENCH_CONFIGS` (default
//! `redb-archive,redb-hash,sled-archive,sled-hash`) change the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mailnotary::archive::Archive;
use mailnotary::archive::evidence::ReceiptSigner;
use mailnotary::archive::query::{Query, Selector};
use mailnotary::envelope::{Envelope, Source};
use mailnotary::policy::{Known, Policy};
use mailnotary::receipt::content::Issuer;
use mailnotary::store::{BackendKind, StoreOptions};

/// The allocator the `mailnotary` binary uses, so that memory is measured
/// as the gateway runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mailnotary::tsa::pki::LocalPki;

/// A small deterministic generator.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Message `i`: a new thread starts where `mix(i)` is a multiple of 6 (threads of
/// six messages on average, each replying to the one before); sizes from
/// 1 to 20 KB.
fn message(i: usize) -> Vec<u8> {
    let r = mix(i as u64);
    let first = i == 0 || r.is_multiple_of(6);
    let thread = i;
    // Mostly about 3 KB, sometimes up to 20 KB.
    let size = match r % 10 {
        0 => 10_000 + (r >> 8) as usize % 10_000,
        1..=3 => 1_000 + (r >> 8) as usize % 2_000,
        _ => 2_500 + (r >> 8) as usize % 1_500,
    };
    let mut m = format!(
        "From: Buyer {t} <buyer{t}@hanseatic-components.example>\r\n\
         To: Sales <sales@supplier{s}.example.cn>\r\n\
         Subject: {re}Order {t}: price and delivery\r\n\
         Date: Mon, 16 Mar 2026 14:{mm:02}:05 +0800\r\n\
         Message-ID: <m{i}@bench.example>\r\n",
        t = thread,
        s = thread % 997,
        re = if first { "" } else { "Re: " },
        mm = i % 60,
    );
    if !first {
        m.push_str(&format!(
            "In-Reply-To: <m{}@bench.example>\r\nReferences: <m{}@bench.example>\r\n",
            i - 1,
            i - 1
        ));
    }
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    let line = "The unit price for part HR-304 is USD 41.50, delivery in six weeks.\r\n";
    while m.len() < size {
        m.push_str(line);
    }
    m.into_bytes()
}

/// A memory figure of this process from /proc/self/status, in MiB:
/// `VmRSS` (now) or `VmHWM` (the peak since the last reset).
fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn rss_mib() -> u64 {
    status_mib("VmRSS:")
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_bytes(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

fn options(backend: BackendKind) -> StoreOptions {
    StoreOptions {
        backend,
        ..StoreOptions::default()
    }
}

/// Opens the archive of `dir` as `ingest` does: policy, key, signer.
fn prepare(dir: &std::path::Path, backend: BackendKind, hash_only: bool) -> Archive {
    let archive = Archive::open(dir, &options(backend)).expect("the archive opens");
    let rule = if hash_only {
        "[[rule]]\nname = \"bench\"\nmode = \"hash-only\"\n"
    } else {
        "[[rule]]\nname = \"bench\"\nmode = \"archive\"\n"
    };
    let policy = Policy::parse_files(
        "bench",
        vec![("bench.toml".into(), rule.into())],
        &Known::default(),
    )
    .expect("the policy");
    archive.set_policy(Arc::new(policy));
    archive
        .use_archive_key(&dir.join("keys/archive.key"))
        .expect("the archive key");
    let pki = LocalPki::open_or_create(dir, "bench").expect("keys");
    archive.set_receipt_signer(ReceiptSigner {
        issuer: Issuer::default(),
        key: pki.receipt.clone(),
    });
    archive
}

/// The child of the kill -9 measurement: keeps storing messages until it
/// is killed.
fn child(dir: &str, backend: &str, hash_only: bool, from: usize) {
    let backend = if backend == "sled" {
        BackendKind::Sled
    } else {
        BackendKind::Redb
    };
    let archive = prepare(std::path::Path::new(dir), backend, hash_only);
    println!("ready");
    for i in from.. {
        let envelope = Envelope {
            received_at: mailnotary::envelope::now_millis(),
            source: Source::Import {
                path: format!("bench/{i}.eml"),
                mbox_index: None,
            },
        };
        let _ = archive.ingest(envelope, message(i));
    }
}

/// Times and thread sizes of one pass of thread lookups.
struct Lookups {
    times: Vec<Duration>,
    sizes: Vec<usize>,
}

impl Lookups {
    fn time(&self, q: f64) -> Duration {
        quantile(&self.times, q)
    }

    fn size(&self, q: f64) -> usize {
        quantile(&self.sizes, q)
    }
}

fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// 1,000 thread lookups spread over the archive; stops with what the
/// archive knows of a message whose thread is not found.
fn lookups(archive: &Archive, count: usize) -> Lookups {
    let mut times = Vec::new();
    let mut sizes = Vec::new();
    for k in 0..1000u64 {
        let i = (mix(k + 7) % count as u64) as usize;
        let t = Instant::now();
        let (found, _) = archive
            .lookup(&Query {
                selector: Selector::Thread(format!("<m{i}@bench.example>")),
                since: None,
                until: None,
            })
            .expect("lookup");
        times.push(t.elapsed());
        sizes.push(found.len());
        if found.is_empty() {
            let by_id = archive
                .find(&Query {
                    selector: Selector::MessageId(format!("m{i}@bench.example")),
                    since: None,
                    until: None,
                })
                .map(|v| v.len());
            let thread = archive.resolve_thread(&format!("<m{i}@bench.example>"));
            panic!(
                "thread lookup {k} of message {i} found nothing; by Message-ID: {by_id:?}; thread: {thread:?}"
            );
        }
    }
    times.sort();
    sizes.sort();
    Lookups { times, sizes }
}

fn run(name: &str, count: usize) {
    let backend = if name.starts_with("sled") {
        BackendKind::Sled
    } else {
        BackendKind::Redb
    };
    let hash_only = name.ends_with("hash");
    let work = tempfile::tempdir_in("/var/tmp").expect("a temporary directory");
    let dir = work.path().to_path_buf();
    let archive = prepare(&dir, backend, hash_only);
    let done = AtomicUsize::new(0);
    // Start the peak (VmHWM) from here, not from an earlier configuration
    // run in the same process.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let mut marks: Vec<(usize, f64, u64)> = Vec::new();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let archive = &archive;
            let done = &done;
            scope.spawn(move || {
                for i in (t..count).step_by(8) {
                    let envelope = Envelope {
                        received_at: mailnotary::envelope::now_millis(),
                        source: Source::Import {
                            path: format!("bench/{i}.eml"),
                            mbox_index: None,
                        },
                    };
                    archive.ingest(envelope, message(i)).expect("ingest");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Throughput over time: every tenth of the run.
        let step = (count / 10).max(1);
        let mut next = step;
        let mut last = (0usize, Instant::now());
        while next <= count {
            let n = done.load(Ordering::Relaxed);
            if n >= next {
                let now = Instant::now();
                let rate = (n - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
                marks.push((n, rate, rss_mib()));
                last = (n, now);
                next += step;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let ingest_peak = status_mib("VmHWM:");

    // Thread lookups at the end: 1,000 threads picked across the archive,
    // looked up right after the last message is stored, then the same ones
    // again, to tell a cold read from a slow one.
    let first = lookups(&archive, count);
    let second = lookups(&archive, count);
    let end_rss = rss_mib();
    archive.close();
    let bytes = dir_bytes(&dir);

    // Reopen after a kill -9 at this size: a child process stores more
    // messages and is killed in the middle; then the store is opened.
    let exe = std::env::current_exe().expect("the bench binary");
    let mut c = std::process::Command::new(exe)
        .env(
            "MAILNOTARY_BENCH_CHILD",
            format!(
                "{}|{}|{}|{count}",
                dir.display(),
                if backend == BackendKind::Sled {
                    "sled"
                } else {
                    "redb"
                },
                hash_only
            ),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the child starts");
    {
        use std::io::BufRead;
        let mut line = String::new();
        let mut out = std::io::BufReader::new(c.stdout.take().expect("stdout"));
        let _ = out.read_line(&mut line);
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = c.kill();
    let _ = c.wait();
    let t = Instant::now();
    let reopened = Archive::open(&dir, &options(backend)).expect("the store reopens");
    let reopen = t.elapsed();
    let stored = reopened
        .find(&Query {
            selector: Selector::MessageId(format!("m{}@bench.example", count / 2)),
            since: None,
            until: None,
        })
        .expect("a lookup after the crash")
        .len();
    reopened.close();

    println!("\n{name}: {count} messages");
    println!(
        "  ingest (8 threads): {:.0} msg/s overall, {:.1} s",
        count as f64 / secs,
        secs
    );
    for (n, rate, rss) in &marks {
        println!("    at {n:>9}: {rate:>8.0} msg/s, RSS {rss} MiB");
    }
    println!(
        "  store: {:.2} GB, {:.0} bytes per message",
        bytes as f64 / 1e9,
        bytes as f64 / count as f64
    );
    for (pass, timed) in [("thread lookup", &first), ("the same again", &second)] {
        println!(
            "  {pass}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (1,000 lookups; messages per thread p50 {}, p99 {})",
            timed.time(0.5).as_secs_f64() * 1e3,
            timed.time(0.99).as_secs_f64() * 1e3,
            timed.time(1.0).as_secs_f64() * 1e3,
            timed.size(0.5),
            timed.size(0.99),
        );
    }
    println!("  RSS at the end: {end_rss} MiB; peak while ingesting (VmHWM): {ingest_peak} MiB");
    println!(
        "  reopen after kill -9: {:.2} s (a message from before the crash found: {})",
        reopen.as_secs_f64(),
        stored == 1
    );
}

fn main() {
    if let Ok(spec) = std::env::var("MAILNOTARY_BENCH_CHILD") {
        let parts: Vec<&str> = spec.split('|').collect();
        child(
            parts[0],
            parts[1],
            parts[2] == "true",
            parts[3].parse().unwrap_or(0),
        );
        return;
    }
    let count: usize = std::env::var("MAILNOTARY_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let configs = std::env::var("MAILNOTARY_BENCH_CONFIGS")
        .unwrap_or_else(|_| "redb-archive,redb-hash,sled-archive,sled-hash".into());
    for name in configs.split(',') {
        run(name.trim(), count);
    }
}
