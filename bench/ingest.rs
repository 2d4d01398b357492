// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Parse-and-digest throughput of the evidence core, beside plain SHA-256.
//!
//! For each message size (2 KB, 10 KB, 100 KB) it generates a set of
//! realistic messages (headers as a mail client writes them, a
//! quoted-printable text part, and for the larger sizes a base64
//! attachment), then measures in the same run:
//!
//! - `analyze`: MIME parse, metadata, raw digest, canonical digest and one
//!   digest per part, which is what ingest does to every message;
//! - SHA-256 alone over the same bytes, the floor any digesting costs.
//!
//! It prints messages/s and MB/s for both and their ratio. Run with
//! `cargo bench --bench ingest`; `MAILNOTARY_BENCH_SECONDS` sets the time
//! per measurement (default 2).

use std::hint::black_box;
use std::time::{Duration, Instant};

use mailnotary::analysis::{Sha256Digest, analyze};

fn message(size: usize, seed: usize) -> Vec<u8> {
    let mut m = format!(
        "Return-Path: <liwei@huarui-precision.example>\r\n\
         Received: from mx.huarui-precision.example (mx [192.0.2.7]) by mail.hanseatic-components.example\r\n\
         \twith ESMTPS id {seed:08x}; Mon, 16 Mar 2026 07:48:05 +0100\r\n\
         From: =?UTF-8?B?5p2O5Lyf?= <liwei@huarui-precision.example>\r\n\
         To: Anna Keller <anna.keller@hanseatic-components.example>\r\n\
         Subject: =?UTF-8?B?5YWz5LqO6K6i5Y2V?= {seed} / Price correction\r\n\
         Date: Mon, 16 Mar 2026 14:48:05 +0800\r\n\
         Message-ID: <{seed}.bench@huarui-precision.example>\r\n\
         In-Reply-To: <{}.bench@huarui-precision.example>\r\n\
         References: <root.bench@hanseatic-components.example> <{}.bench@huarui-precision.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b{seed}\"\r\n\r\n",
        seed.saturating_sub(1),
        seed.saturating_sub(1)
    );
    let text_size = if size > 4096 {
        size / 4
    } else {
        size - m.len() - 200
    };
    m += &format!(
        "--b{seed}\r\nContent-Type: text/plain; charset=UTF-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    let line =
        "Dear Ms Keller, the unit price for PO 4500012291 is =E5=8D=95=E4=BB=B7 USD 1.85.\r\n";
    let mut written = 0;
    while written < text_size {
        m += line;
        written += line.len();
    }
    if size > 4096 {
        m += &format!(
            "--b{seed}\r\nContent-Type: application/pdf; name=\"q.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"q.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        );
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut state = seed as u64 + 1;
        while m.len() < size - 40 {
            let mut l = String::with_capacity(78);
            for _ in 0..76 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                l.push(alphabet[(state >> 58) as usize] as char);
            }
            m += &l;
            m += "\r\n";
        }
    }
    m += &format!("--b{seed}--\r\n");
    m.into_bytes()
}

struct Rate {
    messages_per_s: f64,
    mb_per_s: f64,
}

fn measure(messages: &[Vec<u8>], budget: Duration, f: &mut dyn FnMut(&[u8])) -> Rate {
    // Warm-up pass.
    for m in messages {
        f(m);
    }
    let start = Instant::now();
    let (mut count, mut bytes) = (0u64, 0u64);
    while start.elapsed() < budget {
        for m in messages {
            f(m);
            count += 1;
            bytes += m.len() as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Rate {
        messages_per_s: count as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
    }
}

fn main() {
    let seconds: f64 = std::env::var("MAILNOTARY_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);
    println!(
        "{:>6}  {:>12} {:>9}  {:>12} {:>9}  {:>7}",
        "size", "analyze msg/s", "MB/s", "sha256 msg/s", "MB/s", "ratio"
    );
    for size in [2_000, 10_000, 100_000] {
        let messages: Vec<Vec<u8>> = (0..64).map(|i| message(size, i + 1)).collect();
        let mean = messages.iter().map(Vec::len).sum::<usize>() / messages.len();
        let core = measure(&messages, budget, &mut |m| {
            black_box(analyze(black_box(m)));
        });
        let sha = measure(&messages, budget, &mut |m| {
            black_box(Sha256Digest::of(black_box(m)));
        });
        println!(
            "{:>6}  {:>12.0} {:>9.1}  {:>12.0} {:>9.1}  {:>6.1}%",
            mean,
            core.messages_per_s,
            core.mb_per_s,
            sha.messages_per_s,
            sha.mb_per_s,
            100.0 * core.mb_per_s / sha.mb_per_s
        );
    }
    println!("ratio: analyze throughput as a share of plain SHA-256 over the same bytes");
}
