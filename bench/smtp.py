#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""SMTP ingest: Postfix's smtp-source against Postfix's smtp-sink, then
against `mailnotary serve`, with the same message size, session count and
message count, in the same run.

smtp-sink answers 250 without storing anything: it is the ceiling of what
an SMTP server can answer on this machine with this client. mailnotary
answers 250 only after the message is on disk (fsync, shared by the
sessions that wait together).

For every case it prints messages/s of both, the ratio, and for
mailnotary the time from acknowledgement to evidence: for each message, the
gap between the moment its data was complete (received_at, just before
the 250) and the genTime of the timestamp that covers it (stamped_at), at
the 50th and 99th percentile. That gap is what a batch window costs; the
batch's own durable write follows the genTime by a few milliseconds more.

    python3 bench/smtp.py            # every case (about 10 minutes)
    python3 bench/smtp.py --quick    # 10 KB, 8 sessions only
    python3 bench/smtp.py --quick --mode hash-only

Needs smtp-source and smtp-sink (Debian package postfix) and a release
build, which it makes with cargo first. The counts can be changed with
--messages.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def source(port: int, size: int, sessions: int, count: int, reuse: bool) -> float:
    """Runs smtp-source; returns the elapsed seconds."""
    cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-l", str(size),
           "-f", "bench@example.com", "-t", "archive@localhost", "-M", "bench.test"]
    if reuse:
        cmd.append("-d")
    cmd.append(f"127.0.0.1:{port}")
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"smtp-source failed: {done.stdout}{done.stderr}")
    return elapsed


def sink_rate(size: int, sessions: int, count: int, reuse: bool) -> float:
    port = free_port()
    args = [SMTP_SINK]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    args += [f"127.0.0.1:{port}", "256"]
    sink = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return count / source(port, size, sessions, count, reuse)
    finally:
        sink.terminate()
        sink.wait()


def millis(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def mailnotary_rate(binary: str, size: int, sessions: int, count: int, reuse: bool,
                    backend: str, window_ms: int, mode: str):
    work = tempfile.mkdtemp(prefix="mailnotary-bench-")
    data = os.path.join(work, "data")
    config = os.path.join(work, "mailnotary.toml")
    policies = os.path.join(work, "policies")
    os.makedirs(policies)
    # One rule for every message: the mode under test.
    with open(os.path.join(policies, "all.toml"), "w") as f:
        f.write(f'[[rule]]\nname = "bench"\nmode = "{mode}"\n')
    with open(config, "w") as f:
        f.write(f"[stamping]\nwindow_ms = {window_ms}\n[policy]\ndir = \"{policies}\"\n")
    smtp_port, http_port = free_port(), free_port()
    log = open(os.path.join(work, "serve.log"), "w")
    daemon = subprocess.Popen(
        [binary, "--data", data, "--config", config, "--store", backend, "serve",
         "--smtp", f"127.0.0.1:{smtp_port}", "--http", f"127.0.0.1:{http_port}"],
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(smtp_port)
        rate = count / source(smtp_port, size, sessions, count, reuse)
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz") as r:
                health = json.load(r)
            if health["pending"] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"still pending after 120 s: {health}")
            time.sleep(0.1)
        looked = subprocess.run([binary, "--data", data, "lookup", "--all", "--json"],
                                capture_output=True, text=True, check=True)
        messages = json.loads(looked.stdout)
        if len(messages) != count:
            raise SystemExit(f"{len(messages)} messages stored, {count} sent")
        gaps = sorted(millis(m["stamped_at"]) - millis(m["received_at"]) for m in messages)
        p50 = gaps[len(gaps) // 2]
        p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
        return rate, p50, p99
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 KB, 8 sessions, both connection modes")
    ap.add_argument("--messages", type=int, help="messages per case (default 2000; 500 at 100 KB)")
    ap.add_argument("--backend", default="redb", choices=["redb", "sled"])
    ap.add_argument("--window-ms", type=int, default=1000, help="the stamper's batch window")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--mode", default="archive", choices=["archive", "hash-only"],
                    help="archive: bytes sealed and stored; hash-only: digests only")
    args = ap.parse_args()
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing: install the Debian package postfix")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "release", "mailnotary")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "mailnotary"], cwd=ROOT, check=True)

    sizes = [10 * 1024] if args.quick else [2 * 1024, 10 * 1024, 100 * 1024]
    session_counts = [8] if args.quick else [1, 8]
    print(f"mailnotary serve ({args.backend}, {args.mode} mode, batch window {args.window_ms} ms) "
          f"against smtp-sink; smtp-source as the client")
    print(f"{'size':>6} {'sessions':>8} {'connection':>10} {'messages':>8} "
          f"{'smtp-sink/s':>11} {'mailnotary/s':>12} {'ratio':>6} {'ack→evidence p50':>17} {'p99':>8}")
    for size in sizes:
        count = args.messages or (500 if size >= 100 * 1024 else 2000)
        for sessions in session_counts:
            for reuse in (False, True):
                sink = sink_rate(size, sessions, count, reuse)
                ours, p50, p99 = mailnotary_rate(binary, size, sessions, count, reuse,
                                                 args.backend, args.window_ms, args.mode)
                print(f"{size // 1024:>4}KB {sessions:>8} {'reused' if reuse else 'fresh':>10} "
                      f"{count:>8} {sink:>11.0f} {ours:>12.0f} {ours / sink:>6.0%} "
                      f"{p50:>14.0f} ms {p99:>5.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
