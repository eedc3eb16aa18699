#!/usr/bin/env bash
# The JSON writer's share of a replay: two builds (BASE, e.g. one before the hand-written writer,
# and NEW) replay the same capture with the bundled policy, alternately, RUNS times each; the
# medians of wall and CPU time (user + system) and NEW/BASE ratios, measured in this run.
#
#   bench/json-writer.sh BASE NEW [CAPTURE]      (RUNS=7; CALLGRIND=1 adds instruction counts)
#
# Both outputs must be identical (checked once with cmp; exit 1 if not). CALLGRIND=1 also runs
# each build once under callgrind and prints the total instructions and the inclusive count of
# Writer::write_event (the JSON line: rendering plus the write), which is slow (~10 s a build on
# the 500k mix). Needs /usr/bin/time; valgrind for CALLGRIND=1.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench/json-writer.sh BASE NEW [CAPTURE]}
new=${2:?usage: bench/json-writer.sh BASE NEW [CAPTURE]}
cap=${3:-/work/target/speed/speed-bench/mix-2000000.pcap}
runs=${RUNS:-7}
for b in "$base" "$new"; do
  [ -x "$b" ] || { echo "json-writer.sh: $b is not an executable (cargo build --release)" >&2; exit 2; }
done
[ -r "$cap" ] || { echo "json-writer.sh: cannot read $cap (give a capture as the third argument)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! cmp -s <("$base" replay --policy policies -q "$cap") <("$new" replay --policy policies -q "$cap"); then
  echo "json-writer.sh: the two builds write different output for $cap" >&2
  exit 1
fi
echo "load before: $(uptime)"
for _ in $(seq "$runs"); do
  for who in base new; do
    b=$base; [ "$who" = new ] && b=$new
    /usr/bin/time -f "%e %U %S" -a -o "$tmp/$who" "$b" replay --policy policies -q "$cap" >/dev/null
  done
done
echo "load after:  $(uptime)"
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
wall_b=$(awk '{print $1}' "$tmp/base" | median); cpu_b=$(awk '{print $2+$3}' "$tmp/base" | median)
wall_n=$(awk '{print $1}' "$tmp/new" | median); cpu_n=$(awk '{print $2+$3}' "$tmp/new" | median)
echo "capture: $cap, $runs runs each, medians"
printf "%-6s wall %6.2f s  cpu %6.2f s\n" base "$wall_b" "$cpu_b" new "$wall_n" "$cpu_n"
awk -v a="$wall_b" -v b="$wall_n" -v c="$cpu_b" -v d="$cpu_n" \
  'BEGIN {printf "new/base: wall %.3f, cpu %.3f\n", b/a, d/c}'
if [ "${CALLGRIND:-0}" = 1 ]; then
  for who in base new; do
    b=$base; [ "$who" = new ] && b=$new
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$who" "$b" replay --policy policies -q "$cap" \
      >/dev/null 2>"$tmp/cg.$who.err"
    total=$(grep -a '^summary:' "$tmp/cg.$who" | awk '{print $2}')
    writer=$(callgrind_annotate --inclusive=yes --threshold=100 "$tmp/cg.$who" 2>/dev/null |
      grep -E 'writer.rs:.*Writer<W>::write_event' | awk '{gsub(",", "", $1); if ($1 > m) m = $1} END {print m}')
    echo "callgrind $who: total ${total} instructions, Writer::write_event ${writer:-?} inclusive"
  done
fi
