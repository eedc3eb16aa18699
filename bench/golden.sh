#!/usr/bin/env bash
# Golden outputs of `replay --policy ${POLICY_DIR:-policies}` over every bundled capture (JSON and table, with
# --stats and the summary line, and the exit code), saved once and diffed against later builds.
#
#   bench/golden.sh save  BIN DIR     write BIN's outputs into DIR (one set of files per capture)
#   bench/golden.sh check BIN DIR     run BIN again and diff against DIR; exit 1 on any difference
#
# EXTRA="--threads 2" adds arguments to every replay (e.g. to compare a sharded run); POLICY_DIR
# replays with another policy directory (e.g. an older one, to compare builds across a policy change).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: bench/golden.sh save|check BIN DIR}
bin=${2:?usage: bench/golden.sh save|check BIN DIR}
dir=${3:?usage: bench/golden.sh save|check BIN DIR}
extra=${EXTRA:-}
[ -x "$bin" ] || { echo "golden.sh: $bin is not an executable (build it with cargo build --release)" >&2; exit 2; }
run() { # capture, output prefix
  local f=$1 p=$2
  # shellcheck disable=SC2086
  "$bin" replay --policy ${POLICY_DIR:-policies} --stats $extra "$f" > "$p.json" 2> "$p.json.err"
  echo "rc=$?" >> "$p.json.err"
  # shellcheck disable=SC2086
  "$bin" replay --policy ${POLICY_DIR:-policies} --stats --format table $extra "$f" > "$p.table" 2> "$p.table.err"
  echo "rc=$?" >> "$p.table.err"
}
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 bad=0
while IFS= read -r f; do
  n=$((n + 1))
  name=$(echo "$f" | tr '/' '_')
  if [ "$mode" = save ]; then
    run "$f" "$dir/$name"
  else
    run "$f" "$tmp/$name"
    for s in json json.err table table.err; do
      if ! cmp -s "$dir/$name.$s" "$tmp/$name.$s"; then
        bad=$((bad + 1))
        echo "DIFFERS: $f ($s)"
        diff "$dir/$name.$s" "$tmp/$name.$s" | head -10
      fi
    done
  fi
done < <(find pcaps -name '*.pcap' -o -name '*.pcapng' | sort)
if [ "$mode" = save ]; then
  echo "golden.sh: saved the outputs of $n captures in $dir"
elif [ "$bad" = 0 ]; then
  echo "golden.sh: $n captures, all outputs identical"
else
  echo "golden.sh: $n captures, $bad outputs differ"
  exit 1
fi
