#!/usr/bin/env bash
# Writes the generated seed inputs of the fuzz targets: a real stamped
# thread (the dispute sample) exported as a bundle, split into receipts,
# receipt contents, evidence records and verify triples, and the gateway
# CA that signed them (fixtures/ca.cert.pem, built into the targets).
#
#   fuzz/make-seeds.sh [path/to/mailnotary]
#
# Mail, tokens and the canonical-form vectors are read from where they
# already live in the repository (see README.md); they are not copied.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
bin="${1:-}"
if [ -z "$bin" ]; then
    (cd "$repo" && cargo build --release --quiet)
    bin="${CARGO_TARGET_DIR:-$repo/target}/release/mailnotary"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" --data "$work/data" ingest "$repo/sample-mails/dispute" > /dev/null
"$bin" --data "$work/data" export --out "$work/thread.zip" \
    --thread "<e2b84f17-6c0a-4d93-8b5e-0f1a7c3d2e96@hanseatic-components.example>" > /dev/null
(cd "$work" && mkdir bundle && cd bundle && python3 -m zipfile -e ../thread.zip .)
rm -rf "$here/seeds/receipt" "$here/seeds/evidence" "$here/seeds/verify" "$here/seeds/bundle"
mkdir -p "$here/seeds/receipt" "$here/seeds/evidence" "$here/seeds/verify" "$here/seeds/bundle" \
    "$here/fixtures"
cp "$work/bundle/certs/ca.cert.pem" "$here/fixtures/ca.cert.pem"
cp "$work/bundle"/receipts/*.p7s "$work/bundle"/receipts/*.der "$here/seeds/receipt/"
cp "$work/bundle"/evidence/*.ers "$here/seeds/evidence/"
cp "$work/thread.zip" "$here/seeds/bundle/thread.zip"
# verify: message, receipt and record, each after its length (u32, big-endian).
python3 - "$work/bundle" "$here/seeds/verify" <<'PY'
import pathlib, struct, sys
bundle, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for receipt in sorted((bundle / "receipts").glob("*.p7s")):
    n = receipt.stem
    parts = [bundle / "messages" / f"{n}.eml", receipt, bundle / "evidence" / f"{n}.ers"]
    joined = b"".join(struct.pack(">I", len(b)) + b for b in (p.read_bytes() for p in parts))
    (out / f"{n}.bin").write_bytes(joined)
PY
echo "seeds written under $here/seeds and $here/fixtures"
