#!/usr/bin/env python3
"""Ask a (private, test) Dovecot how it threads the messages of some files.

    dovecot_threads.py --host 127.0.0.1 --port P --user tester --password secret FILE...

For each FILE (an mbox with "From " separator lines, or a single message such
as a .eml) a fresh mailbox is created, every message is APPENDed in file order
(line endings converted to CRLF; the INTERNALDATE is taken from the mbox
"From " line when it has one), the mailbox is SELECTed, and

    UID THREAD <ALGORITHM> UTF-8 ALL          (ALGORITHM defaults to REFS)
    UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])

are run. The mailbox is deleted afterwards. One JSON object is printed:

    {"FILE": {
        "messages": [{"uid": N, "index": I, "message_id": "<...>" | null}, ...],
        "threads":  [[I, I, ...], ...],
        "tree":     [{"index": I | null, "children": [...]}, ...],
        "thread_response": "(1 2)(3)",
        "algorithm": "REFS"}}

"index" is the 0-based position of the message in FILE. "threads" has one
entry per top-level thread, in Dovecot's thread order, listing the file
positions of every message of that thread tree in pre-order (parent before
children, siblings in Dovecot's order). "tree" keeps the nesting; a node with
"index": null is a dummy parent (a message that is referenced but absent, as
in "((1)(2))"). "thread_response" is Dovecot's raw answer, in UIDs.

Only Python's standard library is used.
"""

import argparse
import datetime
import email.utils
import imaplib
import json
import os
import re
import sys
import time
import uuid

FROM_LINE_DATE = re.compile(
    rb"^From \S*\s+(?P<date>[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \d{4})"
    rb"(?: +(?P<tz>[+-]\d{4}))?"
)
MBOXRD_ESCAPE = re.compile(rb"^>(>*From )")


class OracleError(Exception):
    pass


# ---------------------------------------------------------------- input files


def _from_line_date(line):
    """INTERNALDATE from an mbox "From " line, or None."""
    m = FROM_LINE_DATE.match(line)
    if not m:
        return None
    try:
        dt = datetime.datetime.strptime(
            re.sub(rb"\s+", b" ", m.group("date")).decode("ascii"),
            "%a %b %d %H:%M:%S %Y",
        )
    except ValueError:
        return None
    offset = datetime.timedelta(0)
    tz = m.group("tz")
    if tz:
        sign = -1 if tz[:1] == b"-" else 1
        offset = sign * datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
    return dt.replace(tzinfo=datetime.timezone(offset))


def split_messages(data):
    """[(raw message bytes with LF endings, internaldate or None), ...]."""
    data = data.replace(b"\r\n", b"\n")
    if not data.startswith(b"From "):
        return [(data, None)]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    messages = []
    current = None
    date = None
    for i, line in enumerate(lines):
        # A separator is a "From " line at the start of the file or right
        # after an empty line.
        if line.startswith(b"From ") and (i == 0 or lines[i - 1] == b""):
            if current is not None:
                messages.append((current, date))
            current = []
            date = _from_line_date(line)
            continue
        current.append(MBOXRD_ESCAPE.sub(rb"\1", line))
    if current is not None:
        messages.append((current, date))
    result = []
    for body_lines, date in messages:
        # The empty line in front of the next "From " belongs to the mbox
        # format, not to the message.
        if body_lines and body_lines[-1] == b"":
            body_lines = body_lines[:-1]
        result.append((b"\n".join(body_lines) + b"\n", date))
    return result


def to_crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# ----------------------------------------------------------- THREAD response


def parse_thread_response(text):
    """Parse an RFC 5256 THREAD response into a list of tree nodes.

    Each node is {"uid": int | None, "children": [node, ...]}; a None uid is a
    dummy parent ("((1)(2))"). Grammar (RFC 5256):
        thread-list    = "(" (thread-members / thread-nested) ")"
        thread-members = nz-number *(SP nz-number) [SP thread-nested]
        thread-nested  = 2*thread-list
    """
    tokens = re.findall(r"\(|\)|\d+|\S", text)
    for tok in tokens:
        if tok not in ("(", ")") and not tok.isdigit():
            raise OracleError("unexpected token %r in THREAD response %r" % (tok, text))
    pos = 0

    def parse_list():
        nonlocal pos
        if pos >= len(tokens) or tokens[pos] != "(":
            raise OracleError("expected '(' at token %d in %r" % (pos, text))
        pos += 1
        members = []
        nested = []
        while pos < len(tokens) and tokens[pos].isdigit():
            if nested:
                raise OracleError("number after nested thread in %r" % text)
            members.append(int(tokens[pos]))
            pos += 1
        while pos < len(tokens) and tokens[pos] == "(":
            nested.append(parse_list())
        if pos < len(tokens) and tokens[pos].isdigit():
            raise OracleError("number after nested thread in %r" % text)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise OracleError("expected ')' at token %d in %r" % (pos, text))
        pos += 1
        if not members:
            if not nested:
                raise OracleError("empty thread list in %r" % text)
            # Dummy parent whose children are the nested threads.
            return {"uid": None, "children": nested}
        root = {"uid": members[0], "children": []}
        node = root
        for uid in members[1:]:
            child = {"uid": uid, "children": []}
            node["children"].append(child)
            node = child
        node["children"].extend(nested)
        return root

    threads = []
    while pos < len(tokens):
        threads.append(parse_list())
    return threads


def flatten(node):
    out = [] if node["uid"] is None else [node["uid"]]
    for child in node["children"]:
        out.extend(flatten(child))
    return out


def map_tree(node, uid_to_index):
    return {
        "index": None if node["uid"] is None else uid_to_index[node["uid"]],
        "children": [map_tree(c, uid_to_index) for c in node["children"]],
    }


# ------------------------------------------------------------------------ IMAP


def check(resp, what):
    typ, data = resp
    if typ != "OK":
        raise OracleError("%s failed: %s %r" % (what, typ, data))
    return data


def quote_mailbox(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def capabilities(conn):
    data = check(conn.capability(), "CAPABILITY")
    caps = set()
    for line in data:
        if line:
            caps.update(line.decode("ascii", "replace").upper().split())
    return caps


APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.I)
FETCH_UID = re.compile(rb"\bUID (\d+)", re.I)


def parse_message_id(header_block):
    """First Message-ID header value (unfolded, trimmed), or None."""
    text = header_block.decode("utf-8", "replace").replace("\r\n", "\n")
    text = re.sub(r"\n[ \t]+", " ", text)
    for line in text.split("\n"):
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "message-id":
            value = value.strip()
            return value or None
    return None


def fetch_message_ids(conn):
    typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    if typ != "OK":
        raise OracleError("UID FETCH failed: %s %r" % (typ, data))
    ids = {}
    for item in data:
        if isinstance(item, tuple):
            m = FETCH_UID.search(item[0])
            if not m:
                raise OracleError("FETCH response without UID: %r" % (item[0],))
            ids[int(m.group(1))] = parse_message_id(item[1])
        elif item and item != b")":
            # A FETCH response without a literal: empty header block.
            m = FETCH_UID.search(item)
            if m:
                ids.setdefault(int(m.group(1)), None)
    return ids


def thread_file(conn, path, algorithm, charset):
    with open(path, "rb") as f:
        messages = split_messages(f.read())
    mailbox = "oracle-%d-%s" % (os.getpid(), uuid.uuid4().hex[:12])
    qbox = quote_mailbox(mailbox)
    check(conn.create(qbox), "CREATE %s" % mailbox)
    try:
        uids = []
        for index, (raw, date) in enumerate(messages):
            raw = to_crlf(raw)
            if not raw.strip():
                raise OracleError("%s: message %d is empty" % (path, index))
            date_time = imaplib.Time2Internaldate(date) if date else None
            data = check(conn.append(qbox, None, date_time, raw), "APPEND %s #%d" % (path, index))
            m = APPENDUID.search(b" ".join(d for d in data if isinstance(d, bytes)))
            uids.append(int(m.group(2)) if m else None)
        check(conn.select(qbox), "SELECT %s" % mailbox)
        if None in uids:
            # No UIDPLUS: a fresh mailbox gets ascending UIDs in APPEND order.
            found = check(conn.uid("SEARCH", "ALL"), "UID SEARCH")
            uids = [int(u) for u in b" ".join(x for x in found if x).split()]
        if len(uids) != len(messages):
            raise OracleError("%s: %d messages but %d UIDs" % (path, len(messages), len(uids)))
        uid_to_index = {uid: i for i, uid in enumerate(uids)}

        data = check(conn.uid("THREAD", algorithm, charset, "ALL"), "UID THREAD")
        response = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii").strip()
        tree = parse_thread_response(response)
        threads = [[uid_to_index[u] for u in flatten(t)] for t in tree]
        seen = sorted(i for t in threads for i in t)
        if seen != list(range(len(messages))):
            raise OracleError(
                "%s: THREAD response %r does not cover every message exactly once"
                % (path, response)
            )

        ids = fetch_message_ids(conn)
        check(conn.close(), "CLOSE")
        return {
            "messages": [
                {"uid": uid, "index": i, "message_id": ids.get(uid)}
                for i, uid in enumerate(uids)
            ],
            "threads": threads,
            "tree": [map_tree(t, uid_to_index) for t in tree],
            "thread_response": response,
            "algorithm": algorithm,
        }
    finally:
        if conn.state == "SELECTED":
            try:
                conn.close()
            except imaplib.IMAP4.error:
                pass
        try:
            conn.delete(qbox)
        except imaplib.IMAP4.error:
            pass


def connect(host, port, user, password, timeout):
    deadline = time.time() + timeout
    while True:
        try:
            conn = imaplib.IMAP4(host, port, timeout=timeout)
            break
        except OSError:
            if time.time() >= deadline:
                raise
            time.sleep(0.2)
    check(conn.login(user, password), "LOGIN")
    return conn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="IMAP port (or use --dir)")
    ap.add_argument("--dir", help="instance DIR of tests/support/dovecot.sh; reads DIR/port")
    ap.add_argument("--user", default="tester")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--algorithm", default="REFS", help="REFS (default), REFERENCES, ORDEREDSUBJECT")
    ap.add_argument("--charset", default="UTF-8")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--compact", action="store_true", help="print JSON on one line")
    ap.add_argument("files", nargs="+", metavar="FILE")
    args = ap.parse_args(argv)

    port = args.port
    if port is None:
        if not args.dir:
            ap.error("--port or --dir is required")
        with open(os.path.join(args.dir, "port")) as f:
            port = int(f.read().strip())
    algorithm = args.algorithm.upper()

    try:
        conn = connect(args.host, port, args.user, args.password, args.timeout)
        try:
            caps = capabilities(conn)
            if "THREAD=" + algorithm not in caps:
                raise OracleError(
                    "server does not advertise THREAD=%s after login (has: %s)"
                    % (algorithm, " ".join(sorted(c for c in caps if c.startswith("THREAD="))))
                )
            result = {}
            for path in args.files:
                result[path] = thread_file(conn, path, algorithm, args.charset)
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
    except (OracleError, imaplib.IMAP4.error, OSError) as e:
        print("dovecot_threads.py: %s" % e, file=sys.stderr)
        return 1

    json.dump(result, sys.stdout, indent=None if args.compact else 2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
