#!/usr/bin/env bash
# Times `shadowgate report` for one week out of a big event store (issue 12): by default 10
# million events over 400 days with 1 million in 2026-W47 (examples/gen_report_store.rs writes
# the store straight to SQLite; it is kept and reused). Prints wall time and peak RSS
# (/usr/bin/time -v) of a cold-cache-ish first run and a warm second run. Target: under 10 s.
#
#   bash bench/report.sh [EVENTS] [WEEK_EVENTS] [DAYS]     e.g. bash bench/report.sh 200000 20000 400 (smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-10000000}
WEEK_EVENTS=${2:-1000000}
DAYS=${3:-400}
WEEK=2026-W47
TZ_NAME=America/New_York
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin shadowgate --example gen_report_store
BIN=$CARGO_TARGET_DIR/release
DIR=${BENCH_DIR:-$CARGO_TARGET_DIR/bench-report}
mkdir -p "$DIR"
DB=$DIR/events-$EVENTS-$WEEK_EVENTS-$DAYS.db
if [ ! -s "$DB" ]; then
  echo "generating $DB ..."
  "$BIN/examples/gen_report_store" "$DB" "$EVENTS" "$DAYS" "$WEEK_EVENTS" "$WEEK" "$TZ_NAME"
fi
ls -l "$DB"
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
for run in first second; do
  rm -rf "$DIR/out"
  /usr/bin/time -v "$BIN/shadowgate" report --store "$DB" --policy policies --week "$WEEK" \
    --timezone "$TZ_NAME" --out "$DIR/out" 2>"$DIR/time-$run.txt" | tee "$DIR/report-$run.txt"
  wall=$(grep 'Elapsed (wall clock)' "$DIR/time-$run.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident' "$DIR/time-$run.txt" | awk '{print $NF}')
  echo "$run run: wall $wall, peak RSS $((rss / 1024)) MiB"
done
ls -l "$DIR/out"
