#!/usr/bin/env bash
# Runs every fuzz target for SECONDS_PER_TARGET seconds (default 60; .ci/run gives each 20), as
# many at once as there are cores (FUZZ_JOBS=N to choose), seeded from the real fixtures. Fails
# on the first crash, timeout or OOM; the crashing input is left in fuzz/artifacts/<target>/ -
# minimise it (cargo fuzz tmin) and commit it under tests/regressions/<target>/, where
# `cargo test` replays it.
#
#   fuzz/smoke.sh              # 60 s a target
#   SECONDS_PER_TARGET=600 fuzz/smoke.sh log_stream
#   fuzz/smoke.sh --build-only # build the targets, run none (CI builds them beside the tests)
#
# The targets are built with cargo alone, with the flags `cargo fuzz build --sanitizer none`
# uses (libFuzzer's coverage instrumentation, `--cfg fuzzing`, debug assertions and overflow
# checks, for the host target so that build scripts and proc macros stay uninstrumented): CI
# needs no cargo-fuzz, whose install costs more than the smoke run. `cargo fuzz run TARGET`
# works on the same crate for longer runs.
set -euo pipefail
cd "$(dirname "$0")"
BUILD_ONLY=0
if [ "${1:-}" = --build-only ]; then
  BUILD_ONLY=1
  shift
fi
SECS=${SECONDS_PER_TARGET:-60}
JOBS=${FUZZ_JOBS:-$(nproc)}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(log_stream log_entry_pb rpc_bodies snapshot_file conf_json roundtrip_entry http_request http_head rpc_senders pipelined_answer)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Seeds: real logs split into 64 KiB pieces, confs, snapshots, and the regression inputs.
mkdir "$WORK/seeds"
i=0
while IFS= read -r -d '' f; do
  split -b 65536 -d "$f" "$WORK/seeds/seed$i-"
  i=$((i + 1))
done < <(find ../fixtures -type f \( -name log -o -name conf -o -name '*.ss' \) -print0)

HOST=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
RUSTFLAGS+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
RUSTFLAGS+=" -Cllvm-args=-sanitizer-coverage-pc-table"
RUSTFLAGS+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
RUSTFLAGS+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
RUSTFLAGS="$RUSTFLAGS" cargo build --locked --release --target "$HOST" --bins --quiet
BIN=target/$HOST/release
[ "$BUILD_ONLY" = 0 ] || exit 0

# One target's run; its exit status goes to $WORK/<target>.rc, its output to <target>.log.
run() {
  local t=$1
  mkdir -p "corpus/$t" "artifacts/$t"
  if [ -d "../tests/regressions/$t" ]; then
    cp -n ../tests/regressions/"$t"/* "corpus/$t/" 2>/dev/null || true
  fi
  local rc=0
  "$BIN/$t" "corpus/$t" "$WORK/seeds" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$SECS" -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=2 \
    -max_len=65536 -print_final_stats=1 >"$WORK/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$WORK/$t.rc"
}

running=0
for t in "${TARGETS[@]}"; do
  run "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

failed=0
for t in "${TARGETS[@]}"; do
  log=$WORK/$t.log
  if [ "$(cat "$WORK/$t.rc")" != 0 ]; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)"
    failed=1
    continue
  fi
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  echo "fuzz: $t ok, ${runs:-?} executions in ${SECS} s (${rate:-?}/s), ${cov:-cov: ?}, 0 crashes"
done
exit "$failed"
