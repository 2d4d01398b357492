#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, then minimizes what it found.
#
#   fuzz/run.sh TARGET [SECONDS] [more libFuzzer options]
#
# Needs the nightly toolchain and cargo-fuzz (see README.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
target="${1:?usage: fuzz/run.sh TARGET [SECONDS]}"
seconds="${2:-600}"
shift $(( $# > 1 ? 2 : 1 ))
options=(-max_total_time="$seconds" -timeout=30 -print_final_stats=1)
seeds=()
case "$target" in
    mail)
        seeds=("$repo/sample-mails" "$repo/tests/data/canonical" "$repo/tests/data/fuzz")
        options+=(-max_len=65536) ;;
    evidence)
        seeds=("$here/seeds/evidence" "$repo/tests/data/tsa-tokens") ;;
    smtp_session)
        seeds=("$here/seeds/smtp_session")
        options+=(-detect_leaks=0 -max_len=16384) ;;
    bundle)
        seeds=("$here/seeds/bundle")
        options+=(-max_len=262144) ;;
    receipt|verify)
        seeds=("$here/seeds/$target") ;;
    *)
        echo "unknown target $target: mail, smtp_session, receipt, evidence, verify or bundle" >&2
        exit 2 ;;
esac
mkdir -p "$here/corpus/$target"
cd "$repo"
cargo +nightly fuzz run --fuzz-dir "$here" "$target" "$here/corpus/$target" "${seeds[@]}" -- \
    "${options[@]}" "$@"
cargo +nightly fuzz cmin --fuzz-dir "$here" "$target" "$here/corpus/$target" -- "${options[@]:3}"
