#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Sends message files to an SMTP server with Python's smtplib.

Each file's line endings are made CRLF first (smtplib sends bytes as they
are, and the server refuses bare LF), so the bytes the server should store
are known exactly; their SHA-256 is printed with the server's reply.

    smtp_send.py --port P [--starttls --cafile CA] [--rcpt A]... FILE...

Prints a JSON list: {"file", "code", "reply", "sha256", "tls"} per file.
"""
import argparse
import hashlib
import json
import re
import smtplib
import ssl
import sys


def crlf(data: bytes) -> bytes:
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--cafile")
    ap.add_argument("--sender", default="buyer@example.com")
    ap.add_argument("--rcpt", action="append")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    rcpts = args.rcpt or ["archive@localhost"]

    out = []
    with smtplib.SMTP("127.0.0.1", args.port, local_hostname="smtplib.test", timeout=30) as smtp:
        smtp.ehlo()
        tls = None
        if args.starttls:
            context = ssl.create_default_context(cafile=args.cafile)
            context.check_hostname = True
            smtp.starttls(context=context)
            smtp.ehlo()
            tls = smtp.sock.version()
        for path in args.files:
            with open(path, "rb") as f:
                data = crlf(f.read())
            code, reply = smtp.mail(args.sender)
            if code != 250:
                out.append({"file": path, "code": code, "reply": reply.decode(), "sha256": None, "tls": tls})
                smtp.rset()
                continue
            for r in rcpts:
                smtp.rcpt(r)
            code, reply = smtp.data(data)
            out.append({
                "file": path,
                "code": code,
                "reply": reply.decode(),
                "sha256": hashlib.sha256(data).hexdigest(),
                "tls": tls,
            })
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
