#!/usr/bin/env bash
# `make fuzz` (fuzz/README.md): runs every fuzz target for FUZZ_SECONDS (default 60) on stable
# Rust (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags), one after the other, and prints
# executions and coverage per target. New inputs go to fuzz/corpus-work/ (not committed); crashes
# to fuzz/artifacts/ and the run stops with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ehealth-fuzz$')}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# No sanitizer: the parsers are safe Rust (ASan would only slow them down); debug assertions
# on, so an arithmetic overflow is a crash.
flags=(--sanitizer none --debug-assertions)
cargo fuzz build "${flags[@]}"

mkdir -p logs
summary=()
status=0
for t in $targets; do
    mkdir -p "corpus-work/$t"
    echo "== $t: ${seconds}s"
    if ! cargo fuzz run "${flags[@]}" "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$t.log" 2>&1; then
        status=1
        echo "   CRASH or hang: see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "logs/$t.log" | tail -1 | cut -d' ' -f2)
    summary+=("$(printf '%-14s %12s executions  cov %6s  ft %6s' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}")")
done
printf '%s\n' "${summary[@]}"
exit "$status"
