#!/usr/bin/env bash
# Whole-process speed and memory of raftdump on large logs, each as a ratio against `wc -l` over the
# same file in the same run (the page cache is warm for both). Median of RUNS runs.
#
#   benches/compare.sh                 # large-1m shape (generated) and the real large-200k
#   RUNS=3 benches/compare.sh
#
# Prints one row per command: seconds, MB/s of log, peak RSS, and speed relative to `wc -l`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
WORK=${WORK:-/tmp/raftdump-bench}
BIN=target/release/raftdump
cargo build --locked --release --quiet --bin raftdump --example gen-large-log
mkdir -p "$WORK"
ONE_M=$WORK/large-1m
[ -s "$ONE_M/log" ] || target/release/examples/gen-large-log "$ONE_M" 1000000
for n in 2 3; do
  [ -s "$WORK/large-1m-node$n/log" ] || cp -r "$ONE_M" "$WORK/large-1m-node$n"
done
REAL_200K=../shared/fixtures-goraft/large-200k/node1

median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }

# run NAME LOGBYTES CMD...: prints seconds and peak RSS (KiB) medians.
run() {
  local name=$1 bytes=$2; shift 2
  local secs=() rss=()
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/stderr.out" || true
    secs+=("$(awk '{print $1}' "$WORK/time.out")")
    rss+=("$(awk '{print $2}' "$WORK/time.out")")
  done
  local s m
  s=$(printf '%s\n' "${secs[@]}" | median)
  m=$(printf '%s\n' "${rss[@]}" | median)
  printf '%-44s %8.3f s %9.1f MB/s %8.1f MB RSS' "$name" "$s" \
    "$(awk -v b="$bytes" -v s="$s" 'BEGIN {print (s > 0 ? b / s / 1e6 : 0)}')" \
    "$(awk -v m="$m" 'BEGIN {print m / 1024}')"
  if [ -n "${WC_SECS:-}" ]; then
    awk -v s="$s" -v w="$WC_SECS" 'BEGIN {printf "   %6.2fx wc -l time\n", (w > 0 ? s / w : 0)}'
  else
    echo
  fi
  LAST_SECS=$s
}

bench_log() {
  local label=$1 dir=$2
  local bytes; bytes=$(stat -c %s "$dir/log")
  echo "== $label: $dir/log, $bytes bytes"
  WC_SECS=
  run "wc -l (reference)" "$bytes" wc -l "$dir/log"
  WC_SECS=$LAST_SECS
  for cmd in "inspect --summary" "inspect --json" "inspect" "verify" "replay --json"; do
    # shellcheck disable=SC2086
    if $BIN ${cmd%% *} --help >/dev/null 2>&1; then
      run "raftdump $cmd" "$bytes" $BIN $cmd "$dir"
    fi
  done
}

bench_log "large-1m shape (LogWriter)" "$ONE_M"
[ -d "$REAL_200K" ] && bench_log "large-200k (real raftd)" "$REAL_200K"

echo "== three nodes of the large-1m shape"
bytes=$(( $(stat -c %s "$ONE_M/log") * 3 ))
WC_SECS=
run "wc -l (three logs)" "$bytes" wc -l "$ONE_M/log" "$WORK/large-1m-node2/log" "$WORK/large-1m-node3/log"
WC_SECS=$LAST_SECS
for cmd in verify diff; do
  if $BIN $cmd --help >/dev/null 2>&1; then
    run "raftdump $cmd (3 nodes)" "$bytes" $BIN $cmd "$ONE_M" "$WORK/large-1m-node2" "$WORK/large-1m-node3"
  fi
done
