#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Changes and reads a test Dovecot's folders with Python's imaplib, as a
mail client would, for the IMAP watcher's tests.

    imap_tool.py --port P create FOLDER
    imap_tool.py --port P append FOLDER --count N --tag T [--file EML]
    imap_tool.py --port P flags FOLDER
    imap_tool.py --port P recreate FOLDER --plus N --tag T
    imap_tool.py --port P uidvalidity FOLDER

`append` prints the SHA-256 of every message appended (as the server
stores them, CRLF lines) in a JSON list; `flags` prints {uid: [flags]};
`recreate` deletes the folder and creates it again with the same messages
plus N new ones (the server gives it a new UIDVALIDITY) and prints the
digests of the new ones; `uidvalidity` prints the number.
"""
import argparse
import hashlib
import imaplib
import json
import re
import sys


def message(tag: str, n: int) -> bytes:
    body = (
        f"From: Supplier {n} <sales{n}@supplier.example>\r\n"
        f"To: Buyer <buyer@example.com>\r\n"
        f"Subject: {tag} message {n}\r\n"
        f"Message-ID: <{tag}-{n}@imap.test>\r\n"
        f"Date: Thu, 03 Dec 2026 10:00:00 +0800\r\n"
        f"\r\n"
        f"Quotation {n} for {tag}: unit price USD {n}.25, FOB Ningbo.\r\n"
    )
    return body.encode()


def crlf(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def connect(port: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login("tester", "secret")
    return imap


def check(result, what):
    typ, data = result
    if typ != "OK":
        raise SystemExit(f"{what}: {typ} {data}")
    return data


def append_all(imap, folder, messages):
    digests = []
    for m in messages:
        check(imap.append(folder, None, None, m), f"APPEND {folder}")
        digests.append(hashlib.sha256(m).hexdigest())
    return digests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("folder")
    a = sub.add_parser("append")
    a.add_argument("folder")
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--tag", default="imap")
    a.add_argument("--start", type=int, default=0)
    a.add_argument("--file")
    f = sub.add_parser("flags")
    f.add_argument("folder")
    r = sub.add_parser("recreate")
    r.add_argument("folder")
    r.add_argument("--plus", type=int, default=1)
    r.add_argument("--tag", default="recreated")
    u = sub.add_parser("uidvalidity")
    u.add_argument("folder")
    args = ap.parse_args()

    imap = connect(args.port)
    if args.cmd == "create":
        check(imap.create(args.folder), "CREATE")
        print(json.dumps({"created": args.folder}))
    elif args.cmd == "append":
        if args.file:
            with open(args.file, "rb") as fh:
                messages = [crlf(fh.read())]
        else:
            messages = [message(args.tag, args.start + n) for n in range(args.count)]
        print(json.dumps(append_all(imap, args.folder, messages)))
    elif args.cmd == "flags":
        check(imap.select(args.folder, readonly=True), "EXAMINE")
        data = check(imap.uid("FETCH", "1:*", "(FLAGS)"), "FETCH FLAGS")
        flags = {}
        for line in data:
            if not line:
                continue
            text = line.decode() if isinstance(line, bytes) else line[0].decode()
            m = re.search(r"UID (\d+).*FLAGS \(([^)]*)\)", text) or re.search(
                r"FLAGS \(([^)]*)\).*UID (\d+)", text)
            if not m:
                continue
            if text.find("UID") < text.find("FLAGS"):
                uid, fl = m.group(1), m.group(2)
            else:
                fl, uid = m.group(1), m.group(2)
            flags[uid] = fl.split()
        print(json.dumps(flags))
    elif args.cmd == "recreate":
        check(imap.select(args.folder, readonly=True), "EXAMINE")
        data = check(imap.uid("FETCH", "1:*", "(BODY.PEEK[])"), "FETCH")
        old = [part[1] for part in data if isinstance(part, tuple)]
        imap.close()
        check(imap.delete(args.folder), "DELETE")
        check(imap.create(args.folder), "CREATE")
        append_all(imap, args.folder, old)
        new = [message(args.tag, n) for n in range(args.plus)]
        print(json.dumps(append_all(imap, args.folder, new)))
    elif args.cmd == "uidvalidity":
        data = check(imap.status(args.folder, "(UIDVALIDITY)"), "STATUS")
        print(json.dumps(int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))))
    imap.logout()
    return 0


if __name__ == "__main__":
    sys.exit(main())
