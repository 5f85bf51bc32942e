#!/usr/bin/env bash
# Smoke-run every fuzz target for a few seconds, starting from the committed seeds:
# enough to catch a parser change that crashes at once, not a search for new bugs.
# Usage: fuzz/smoke.sh [SECONDS_PER_TARGET]   (default 20)
# libFuzzer needs a nightly toolchain; without one this says so and succeeds, since
# `cargo test` (tests/fuzz_corpus.rs) replays the seeds on stable anyway.
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] (a whole number of seconds, at least 1)" >&2
    exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz smoke: skipped: no nightly toolchain (cargo +nightly is not available)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# New inputs go to a scratch folder; the committed seeds are only read.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

start=$SECONDS
cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
    echo "fuzz smoke: $target for ${seconds} s"
    mkdir -p "$scratch/$target"
    # A crash, a leak or a timeout makes cargo fuzz exit non-zero; the input is then
    # saved under fuzz/artifacts/$target/.
    log="$scratch/$target.log"
    if ! cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -dict=carillon.dict -max_total_time="$seconds" -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz smoke: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^(Done|stat::average_exec_per_sec)' "$log"
done
echo "fuzz smoke: every target ran ${seconds} s without a crash ($((SECONDS - start)) s in all)"
