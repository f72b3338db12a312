#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60; .ci/run gives each 20) with --sanitizer none (cargo-fuzz on stable),
# seeded from the real fixtures. Fails on the first crash, timeout or OOM; the crashing input is
# left in fuzz/artifacts/<target>/ - minimise it (cargo fuzz tmin) and commit it under
# tests/regressions/<target>/, where `cargo test` replays it.
#
#   fuzz/smoke.sh            # 60 s a target
#   SECONDS_PER_TARGET=600 fuzz/smoke.sh log_stream
set -euo pipefail
cd "$(dirname "$0")"
SECS=${SECONDS_PER_TARGET:-60}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(log_stream log_entry_pb rpc_bodies snapshot_file conf_json roundtrip_entry http_request http_head rpc_senders)
SEEDS=$(mktemp -d)
trap 'rm -rf "$SEEDS"' EXIT
# Seeds: real logs split into 64 KiB pieces, confs, snapshots, and the regression inputs.
i=0
while IFS= read -r -d '' f; do
  split -b 65536 -d "$f" "$SEEDS/seed$i-"
  i=$((i + 1))
done < <(find ../fixtures -type f \( -name log -o -name conf -o -name '*.ss' \) -print0)
cargo fuzz build --sanitizer none >/dev/null
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  [ -d "../tests/regressions/$t" ] && cp -n ../tests/regressions/"$t"/* "corpus/$t/" 2>/dev/null || true
  log=$(mktemp)
  if ! cargo fuzz run --sanitizer none "$t" "corpus/$t" "$SEEDS" -- \
      -max_total_time="$SECS" -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=2 -max_len=65536 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  echo "fuzz: $t ok, ${runs:-?} executions in ${SECS} s (${rate:-?}/s), ${cov:-cov: ?}, 0 crashes"
  rm -f "$log"
done
