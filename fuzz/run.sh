#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 300) on the stable toolchain and print the
# libFuzzer summary lines. Seed corpora live in fuzz/corpus/ (not committed; see README).
set -uo pipefail
cd "$(dirname "$0")"
SECS=${1:-300}
for t in ${TARGETS:-frame dns tls quic name}; do
  mkdir -p corpus/$t
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 2>&1 | tail -n 12 > "fuzz-$t.log"
  echo "== $t: $(grep -E 'Done [0-9]+ runs|stat::number_of_executed_units' fuzz-$t.log | tail -1) $(grep -c 'panicked\|ERROR: libFuzzer' fuzz-$t.log) crashes"
done
