#!/usr/bin/env bash
# Run the fuzz targets on the stable toolchain (RUSTC_BOOTSTRAP) and print one summary line each.
#
#   fuzz/run.sh [SECONDS]            each target for SECONDS (default 300)
#   fuzz/run.sh --runs N [SECONDS]   each target for N executions (stops at SECONDS too, if given)
#   TARGETS="frame file" fuzz/run.sh ...           only these targets
#   RUNS_frame=100000 SECS_file=600 fuzz/run.sh    per-target execution count / time
#   PROFILE=smoke fuzz/run.sh --runs 2000          a quicker build (opt-level 1; CI's smoke run)
#   SANITIZER=address fuzz/run.sh ...              with AddressSanitizer (slower; default none:
#                                                   the library's unsafe is FFI and syscalls only)
#
# Builds the targets the way `cargo fuzz build` does (libFuzzer, sanitizer coverage, debug
# assertions and overflow checks, `--cfg fuzzing`) with plain cargo, so cargo-fuzz need not be
# installed: binaries in fuzz/target/<host triple>/<profile>/<target>.
#
# CARGO_TARGET_DIR is honoured; LOGDIR=DIR keeps the logs there instead of fuzz/.
# Seed corpora: fuzz/seed.sh fills fuzz/corpus/<target> from pcaps/ (not committed; CORPUS=DIR
# for another folder under fuzz/). Full logs
# are kept in fuzz/fuzz-<target>.log, crash inputs in fuzz/artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")"
RUNS=
SECS=
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#--runs=}; shift ;;
    *) SECS=$1; shift ;;
  esac
done
[ -z "$RUNS" ] && [ -z "$SECS" ] && SECS=300
# Largest input per target: a frame up to the 262,144-byte snap length (plus the link-type
# selector byte); a file with such a frame and more; DNS over TCP and UDP datagrams up to 64 KiB;
# a ClientHello up to 16 KiB in records.
max_len() {
  case "$1" in
    frame) echo 262145 ;;
    file) echo 524288 ;;
    dns | quic) echo 65535 ;;
    tls) echo 20480 ;;
    *) echo 4096 ;;
  esac
}
CORPUS=${CORPUS:-corpus}
ALL="frame file dns tls quic name relp portal dnsq"
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
flags+=" -Cforce-frame-pointers"
case "${SANITIZER:-none}" in
  none) ;;
  address) flags+=" -Zsanitizer=address" ;;
  *) echo "run.sh: SANITIZER is none or address, not ${SANITIZER}" >&2; exit 2 ;;
esac
bins=()
for t in ${TARGETS:-$ALL}; do bins+=(--bin "$t"); done
start=$(date +%s)
PROFILE=${PROFILE:-release}
TDIR=${CARGO_TARGET_DIR:-target}
LOGDIR=${LOGDIR:-.}
mkdir -p "$LOGDIR"
if ! RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" cargo build --profile "$PROFILE" --target "$TRIPLE" "${bins[@]}" > "$LOGDIR/fuzz-build.log" 2>&1; then
  tail -30 "$LOGDIR/fuzz-build.log"
  echo "== build FAILED (full log: fuzz/fuzz-build.log)"
  exit 1
fi
echo "== build: $(($(date +%s) - start)) s"
status=0
for t in ${TARGETS:-$ALL}; do
  mkdir -p "$CORPUS/$t" "artifacts/$t"
  eval "runs=\${RUNS_$t:-$RUNS}; secs=\${SECS_$t:-$SECS}"
  args=(-max_len="$(max_len "$t")" -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/")
  [ -n "$runs" ] && args+=(-runs="$runs")
  [ -n "$secs" ] && args+=(-max_total_time="$secs")
  "$TDIR/$TRIPLE/$PROFILE/$t" "${args[@]}" "$CORPUS/$t" > "$LOGDIR/fuzz-$t.log" 2>&1
  rc=$?
  done_line=$(grep -E 'Done [0-9]+ runs' "$LOGDIR/fuzz-$t.log" | tail -1)
  [ -z "$done_line" ] && done_line=$(grep -E '^#[0-9]+' "$LOGDIR/fuzz-$t.log" | tail -1 | cut -c1-100)
  crash=$(grep -m1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)[^\n]*' "$LOGDIR/fuzz-$t.log" | cut -c1-160)
  if [ $rc -ne 0 ] || [ -n "$crash" ]; then
    status=1
    echo "== $t: FAILED (exit $rc) after ${done_line:-?}: ${crash:-see $LOGDIR/fuzz-$t.log}; input: $(ls -t "artifacts/$t" | head -1)"
  else
    cov=$(grep -E '^#[0-9]+' "$LOGDIR/fuzz-$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')
    echo "== $t: $done_line, $cov, corpus $(ls "$CORPUS/$t" | wc -l) inputs ($(du -sb "$CORPUS/$t" | cut -f1) bytes), 0 crashes"
  fi
done
exit $status
