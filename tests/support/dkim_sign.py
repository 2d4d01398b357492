#!/usr/bin/env python3
"""Sign messages with dkimpy, an independent DKIM signer, for mailnotary's
DKIM tests.

    dkim_sign.py --domain D --selector S --key rsa|ed25519
                 [--canon relaxed/simple] --keydir DIR IN OUT [IN OUT]...

Makes a new key in DIR (RSA-2048 with openssl, or Ed25519 with PyNaCl),
signs each IN with it and writes the signed message to OUT (the
DKIM-Signature field first, then IN unchanged). Prints one JSON object:
{"name": "S._domainkey.D", "record": "v=DKIM1; k=...; p=..."}, the TXT
record a DNS server must serve for the signatures to verify.

Needs the Python packages dkimpy and (for Ed25519) PyNaCl, and the openssl
command for RSA.
"""

import argparse
import base64
import json
import os
import subprocess
import sys

import dkim


def rsa_key(keydir):
    private = os.path.join(keydir, "rsa.key")
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", private],
        check=True, capture_output=True)
    public_der = subprocess.run(
        ["openssl", "pkey", "-in", private, "-pubout", "-outform", "DER"],
        check=True, capture_output=True).stdout
    with open(private, "rb") as f:
        pem = f.read()
    record = "v=DKIM1; k=rsa; p=" + base64.b64encode(public_der).decode()
    return pem, record


def ed25519_key():
    import nacl.signing
    signing = nacl.signing.SigningKey.generate()
    seed = base64.b64encode(bytes(signing))
    public = base64.b64encode(bytes(signing.verify_key)).decode()
    return seed, "v=DKIM1; k=ed25519; p=" + public


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--domain", required=True)
    parser.add_argument("--selector", required=True)
    parser.add_argument("--key", choices=["rsa", "ed25519"], required=True)
    parser.add_argument("--canon", default="relaxed/simple")
    parser.add_argument("--keydir", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    if len(args.files) % 2:
        sys.exit("give IN OUT pairs")
    os.makedirs(args.keydir, exist_ok=True)
    if args.key == "rsa":
        private, record = rsa_key(args.keydir)
        algorithm = b"rsa-sha256"
    else:
        private, record = ed25519_key()
        algorithm = b"ed25519-sha256"
    header_c, body_c = args.canon.split("/")
    for source, target in zip(args.files[0::2], args.files[1::2]):
        with open(source, "rb") as f:
            message = f.read()
        signature = dkim.sign(
            message,
            args.selector.encode(),
            args.domain.encode(),
            private,
            canonicalize=(header_c.encode(), body_c.encode()),
            signature_algorithm=algorithm,
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        with open(target, "wb") as f:
            f.write(signature + message)
    name = "%s._domainkey.%s" % (args.selector, args.domain)
    json.dump({"name": name, "record": record}, sys.stdout)


if __name__ == "__main__":
    main()
