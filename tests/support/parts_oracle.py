#!/usr/bin/env python3
"""Print the SHA-256 of every leaf MIME part's decoded bytes, by Python's
email package, as an independent check of mailnotary's part digests.

    parts_oracle.py [--save DIR] FILE...

Prints one JSON object: {"FILE": [{"content_type": ..., "filename": ...,
"sha256": ..., "sha256_crlf": ..., "size": N}, ...]} listing the leaves (parts that are neither
multipart nor message/rfc822) in tree order. With --save, each leaf's
decoded bytes are also written to DIR/N (N counting from 1 over all files)
and its entry gets "saved": that path. Only the standard library is used.

Python's decoder turns the line breaks of a quoted-printable text part into
LF, while the part's canonical form on the wire (RFC 2046 section 4.1.1) has
CRLF, which is what mailnotary hashes. For text parts "sha256_crlf" is
therefore the digest with every bare LF read as CRLF; a caller accepts either.
"""

import email
import email.policy
import hashlib
import json
import os
import sys


def leaves(message):
    for part in message.walk():
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            continue
        payload = part.get_payload(decode=True) or b""
        crlf = payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        yield payload, {
            "sha256_crlf": hashlib.sha256(crlf).hexdigest(),
            "content_type": part.get_content_type(),
            "filename": part.get_filename(),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
        }


def main():
    args = sys.argv[1:]
    save = None
    if args[:1] == ["--save"]:
        save, args = args[1], args[2:]
    result = {}
    n = 0
    for path in args:
        with open(path, "rb") as f:
            message = email.message_from_binary_file(f, policy=email.policy.compat32)
        entries = []
        for payload, entry in leaves(message):
            if save:
                n += 1
                entry["saved"] = os.path.join(save, str(n))
                with open(entry["saved"], "wb") as out:
                    out.write(payload)
            entries.append(entry)
        result[path] = entries
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
