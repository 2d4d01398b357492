#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""An RFC 3161 Time-Stamp Authority over HTTP, backed by `openssl ts -reply`.

It stands in for an external, independent TSA in the interoperability tests:
the tokens come from OpenSSL, not from mailnotary's own code.

    openssl_tsa.py --dir DIR --key rsa|p256 [--ess v1|v2] [--precision N]
                   [--port-file FILE] [--fault none|timeout|garbage|500|rejection]

In DIR it makes a self-signed root CA (ca.key, ca.pem) and a TSA certificate
issued by it (tsa.key, tsa.pem; extendedKeyUsage critical, timeStamping only),
keys of the chosen type, valid from a day ago for 3650 days. Existing files
are reused whatever --key says, so a restart keeps the identity. The ts
configuration (tsa.cnf) follows --ess (v1: signingCertificate, SHA-1 ESSCertID;
v2: signingCertificateV2, SHA-256) and --precision (genTime fraction digits).

It listens on 127.0.0.1, on a free port written to --port-file. A POST of a
DER TimeStampReq to any non-control path answers the DER TimeStampResp
(application/timestamp-reply). Tests steer it with

    POST /control/fault   body none|timeout|garbage|500|rejection
    GET  /control/stats   {"requests": N, "stamped": M, "fault": "..."}

timeout sleeps 30 s before answering, garbage answers non-DER bytes, 500 is
HTTP 500, rejection is a TimeStampResp with status rejection and no token.
"""

import argparse
import datetime
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

FAULTS = ("none", "timeout", "garbage", "500", "rejection")
KEY_TYPES = {"rsa": ("RSA", "rsa_keygen_bits:2048"),
             "p256": ("EC", "ec_paramgen_curve:prime256v1")}
TIMEOUT_SECONDS = 30

CA_CONFIG = """\
[ ca ]
default_ca = local_ca
[ local_ca ]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = any_name
[ any_name ]
commonName = supplied
organizationName = optional
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ tsa_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

TS_CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = tsaserial
signer_cert = tsa.pem
signer_key = tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = {precision}
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = {ess_alg}
"""

# TimeStampResp { PKIStatusInfo { rejection(2), {"fault injected"}, failInfo } }
# with no token; failInfo is systemFailure, bit 25: 4 octets, 6 bits unused.
_STATUS = b"\x02\x01\x02"
_TEXT = b"\x30\x10\x0c\x0efault injected"
_FAIL_INFO = b"\x03\x05\x06\x00\x00\x00\x40"
_INFO = _STATUS + _TEXT + _FAIL_INFO
REJECTION = bytes([0x30, len(_INFO) + 2, 0x30, len(_INFO)]) + _INFO


def openssl(directory, *args):
    """Run one openssl command in DIR, raising with its stderr on failure."""
    done = subprocess.run(["openssl", *args], cwd=directory, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace')}")


def make_key(directory, name, kind):
    algorithm, option = KEY_TYPES[kind]
    openssl(directory, "genpkey", "-algorithm", algorithm, "-pkeyopt", option, "-out", name)
    os.chmod(os.path.join(directory, name), 0o600)


def issue(directory, csr, out, extensions, *signer):
    """Sign CSR with `openssl ca`, which (unlike `x509`) takes a start date."""
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    end = start + datetime.timedelta(days=3650)
    stamp = "%Y%m%d%H%M%SZ"
    openssl(directory, "ca", "-batch", "-config", "ca.cnf", "-notext", "-preserveDN",
            "-rand_serial", "-extensions", extensions, "-in", csr, "-out", out,
            "-startdate", start.strftime(stamp), "-enddate", end.strftime(stamp), *signer)


def make_identity(directory, kind):
    """Create the root CA and the TSA certificate unless they already exist."""
    if all(os.path.exists(os.path.join(directory, n)) for n in ("ca.pem", "tsa.pem", "tsa.key")):
        return
    os.makedirs(os.path.join(directory, "ca-db"), exist_ok=True)
    open(os.path.join(directory, "ca-db", "index.txt"), "w").close()
    with open(os.path.join(directory, "ca.cnf"), "w") as f:
        f.write(CA_CONFIG)
    ca_signs = (("ca", "Root CA", ["-selfsign"]), ("tsa", "TSA", ["-cert", "ca.pem"]))
    for name, title, signer in ca_signs:
        make_key(directory, f"{name}.key", kind)
        openssl(directory, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/O=Interop Test/CN=Interop Test {title}")
        issue(directory, f"{name}.csr", f"{name}.pem", f"{name}_ext",
              *signer, "-keyfile", "ca.key")
        os.remove(os.path.join(directory, f"{name}.csr"))


def write_ts_config(directory, ess, precision):
    alg = "sha1" if ess == "v1" else "sha256"
    with open(os.path.join(directory, "tsa.cnf"), "w") as f:
        f.write(TS_CONFIG.format(precision=precision, ess_alg=alg))
    serial = os.path.join(directory, "tsaserial")
    if not os.path.exists(serial):
        with open(serial, "w") as f:
            f.write("01\n")


def granted(response):
    """True when a DER TimeStampResp has status granted(0) or grantedWithMods(1)."""
    def inside(at):  # the offset of the content of the SEQUENCE at `at`
        length = response[at + 1]
        return at + 2 + (length & 0x7F if length >= 0x80 else 0)
    try:
        at = inside(inside(0))  # TimeStampResp, then PKIStatusInfo
        return response[at:at + 2] == b"\x02\x01" and response[at + 2] in (0, 1)
    except IndexError:
        return False


class Tsa:
    """The state shared by all request threads."""

    def __init__(self, directory, fault):
        self.directory = directory
        self.fault = fault
        self.requests = 0
        self.stamped = 0
        self.lock = threading.Lock()       # counters and fault
        self.signing = threading.Lock()    # openssl rewrites tsaserial

    def stamp(self, query):
        """Return (status, content type, body) for a DER TimeStampReq."""
        fd, req = tempfile.mkstemp(dir=self.directory, prefix="req-", suffix=".tsq")
        resp = req[:-4] + ".tsr"
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(query)
            with self.signing:
                openssl(self.directory, "ts", "-reply", "-config", "tsa.cnf", "-queryfile", req,
                        "-inkey", "tsa.key", "-signer", "tsa.pem", "-out", resp)
            with open(resp, "rb") as f:
                return 200, "application/timestamp-reply", f.read()
        except (RuntimeError, OSError) as error:
            return 500, "text/plain", str(error).encode()
        finally:
            for path in (req, resp):
                if os.path.exists(path):
                    os.remove(path)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tsa = None  # set by main

    def log_message(self, format, *args):
        sys.stderr.write("openssl_tsa: %s\n" % (format % args))

    def answer(self, status, content_type, body):
        self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout fault does that)

    def do_GET(self):
        if self.path != "/control/stats":
            return self.answer(404, "text/plain", b"not found\n")
        with self.tsa.lock:
            stats = {"requests": self.tsa.requests, "stamped": self.tsa.stamped,
                     "fault": self.tsa.fault}
        self.answer(200, "application/json", json.dumps(stats).encode())

    def do_POST(self):
        try:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except (ValueError, OSError):
            return self.answer(400, "text/plain", b"unreadable body\n")
        if self.path == "/control/fault":
            return self.set_fault(data.decode(errors="replace").strip())
        if self.path.startswith("/control/"):
            return self.answer(404, "text/plain", b"not found\n")
        with self.tsa.lock:
            self.tsa.requests += 1
            fault = self.tsa.fault
        status, content_type, reply = self.reply(fault, data)
        if status == 200 and fault == "none" and granted(reply):
            with self.tsa.lock:
                self.tsa.stamped += 1
        self.answer(status, content_type, reply)

    def set_fault(self, fault):
        if fault not in FAULTS:
            return self.answer(400, "text/plain", b"unknown fault\n")
        with self.tsa.lock:
            self.tsa.fault = fault
        self.answer(200, "text/plain", b"ok")

    def reply(self, fault, query):
        if fault == "timeout":
            time.sleep(TIMEOUT_SECONDS)
            return 503, "text/plain", b"timeout fault\n"
        if fault == "garbage":
            return 200, "application/timestamp-reply", b"\xff\xfe not DER " + os.urandom(24)
        if fault == "500":
            return 500, "text/plain", b"fault injected\n"
        if fault == "rejection":
            return 200, "application/timestamp-reply", REJECTION
        return self.tsa.stamp(query)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--key", required=True, choices=("rsa", "p256"))
    parser.add_argument("--ess", default="v2", choices=("v1", "v2"))
    parser.add_argument("--precision", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--fault", default="none", choices=FAULTS)
    args = parser.parse_args()

    directory = os.path.abspath(args.dir)
    os.makedirs(directory, exist_ok=True)
    make_identity(directory, args.key)
    write_ts_config(directory, args.ess, args.precision)

    Handler.tsa = Tsa(directory, args.fault)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))  # leaves serve_forever
    if args.port_file:
        temp = f"{args.port_file}.tmp{os.getpid()}"
        with open(temp, "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.replace(temp, args.port_file)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
