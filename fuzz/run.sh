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
read -ra dirs <<< "$(awk -v t="$target" '$1 == t { $1 = ""; print }' "$here/seeds.txt")"
if [ "${#dirs[@]}" -eq 0 ]; then
    echo "unknown target $target: mail, smtp_session, receipt, evidence, verify or bundle" >&2
    exit 2
fi
seeds=("${dirs[@]/#/$repo/}")
case "$target" in
    mail) options+=(-max_len=65536) ;;
    smtp_session) options+=(-detect_leaks=0 -max_len=16384) ;;
    bundle) options+=(-max_len=262144) ;;
esac
mkdir -p "$here/corpus/$target"
cd "$repo"
cargo +nightly fuzz run --fuzz-dir "$here" "$target" "$here/corpus/$target" "${seeds[@]}" -- \
    "${options[@]}" "$@"
cargo +nightly fuzz cmin --fuzz-dir "$here" "$target" "$here/corpus/$target" -- "${options[@]:3}"
