#!/usr/bin/env bash
# Runs one fuzz target for a given time on STABLE Rust, then prints libFuzzer's final stats.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#   fuzz/run.sh query_parser 600
#   KEEP_GOING=1 fuzz/run.sh record_decoder 600   # go on after a crash (fork mode)
#
# TARGET is one of the [[bin]]s of fuzz/Cargo.toml. The corpus is fuzz/corpus/TARGET
# (created, and extended with new inputs), seeded from the committed fuzz/seeds/TARGET;
# a crashing input lands in fuzz/artifacts/TARGET/ (crash-<sha1>), and the full log in
# fuzz/artifacts/TARGET/run-<time>.log. See docs/testing.md, "Fuzzing".
#
# The recipe: `cargo fuzz run --sanitizer none`. It builds with sancov instrumentation
# (stable -C flags only), `--cfg fuzzing`, release optimizations plus debug assertions and
# overflow checks, so no nightly and no RUSTC_BOOTSTRAP are needed. (The default address
# sanitizer needs `-Zsanitizer`, i.e. nightly; labeldb is `#![forbid(unsafe_code)]`, so a
# panic — including an overflow or failed assertion — is what we are looking for.)
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

cd "$(dirname "$0")"
if [[ ! -f fuzz_targets/$target.rs ]]; then
    echo "no fuzz target $target (have: $(cd fuzz_targets && ls *.rs | sed 's/\.rs$//' | tr '\n' ' '))" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
}

mkdir -p "corpus/$target" "artifacts/$target"
log="artifacts/$target/run-$(date +%Y%m%d-%H%M%S).log"

flags=(
    "-max_total_time=$seconds"
    -max_len=4096
    -rss_limit_mb=2048
    -timeout=10
    -print_final_stats=1
)
if [[ -f dicts/$target.dict ]]; then
    flags+=("-dict=dicts/$target.dict")
fi
if [[ ${KEEP_GOING:-0} == 1 ]]; then
    # One worker process at a time that is restarted after a crash; every crash is kept.
    flags+=(-fork=1 -ignore_crashes=1)
fi

# Build first, so the fuzzing time is not spent compiling.
cargo fuzz build --sanitizer none "$target"

echo "fuzzing $target for ${seconds}s; log: fuzz/$log" >&2
status=0
# The corpus dirs: new inputs go to the first; the seeds are read only.
cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- "${flags[@]}" "$@" \
    >"$log" 2>&1 || status=$?

echo "== $target: exit status $status; last libFuzzer stats (fuzz/$log):"
# In-process mode: `#N DONE cov: …` and stat::…; fork mode: the last `#N: cov: … crash: …`.
grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -n 1 || true
grep -E '^(stat::|Done [0-9]+ runs)' "$log" || true
if compgen -G "artifacts/$target/crash-*" >/dev/null || compgen -G "artifacts/$target/oom-*" >/dev/null ||
    compgen -G "artifacts/$target/timeout-*" >/dev/null; then
    echo "== artifacts:"
    ls -l "artifacts/$target" | grep -E 'crash-|oom-|timeout-|slow-unit-' || true
    grep -m 3 -E "panicked at|^SUMMARY" "$log" || true
fi
exit "$status"
