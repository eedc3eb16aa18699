#!/usr/bin/env bash
# Speed of `shadowgate replay` in one run: the bulk-dominated mix (examples/gen_capture.rs,
# 2,000,000 packets) replayed by shadowgate on one and two threads, by Suricata 7 (no rules, DNS
# and TLS eve logging, single run mode) and read by `cat FILE > /dev/null` with a warm page cache,
# RUNS times each, interleaved (so load from other users hits every tool alike); prints the
# median and best wall times, the CPU times, and the ratios the targets are stated in. Then the cost model:
# ns/packet per packet class and the cost of bulk and the memory from 10,000 to 1,000,000
# concurrent flows (examples/gen_speed.rs).
#
#   bench/speed.sh [mix|classes|flows|all]     (default all)
#
# Environment: RUNS (5), N (mix packets, 2000000), FLOWS ("10000 100000 1000000"), BULK (bulk
# packets per flows capture, 12000000: enough that the setup's swing on a shared machine does
# not swamp the difference), OUT (where
# the generated captures go: $CARGO_TARGET_DIR/speed-bench, about 3 GB for all), BIN (a
# shadowgate binary to measure instead of this tree's release build), PIN=1 (pin one-thread
# runs to CPU 0 and two-thread runs to CPUs 0-1: on a quiet machine only). Needs suricata
# (Debian bookworm: apt-get -t bookworm-backports install suricata; skipped with a note if
# absent) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
T=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$T/speed-bench}
RUNS=${RUNS:-5}
N=${N:-2000000}
FLOWS=${FLOWS:-10000 100000 1000000}
mkdir -p "$OUT"
cargo build --release --quiet --bin shadowgate --example gen_capture --example gen_speed
BIN=${BIN:-$T/release/shadowgate}
GEN=$T/release/examples
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; binary $BIN"

if [ "$WHAT" = all ] || [ "$WHAT" = mix ]; then
  MIX=$OUT/mix-$N.pcap
  [ -s "$MIX" ] || "$GEN/gen_capture" "$MIX" "$N"
  python3 - "$BIN" "$MIX" "$N" "$RUNS" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, time
bin_, mix, n, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# PIN=1: single-thread tools on CPU 0, two threads on CPUs 0-1 (on a quiet machine only: on a
# busy one a pinned process waits for its CPU while the other is free).
pin = ["taskset", "-c", "0"] if os.environ.get("PIN") == "1" else []
pin2 = ["taskset", "-c", "0,1"] if os.environ.get("PIN") == "1" else []
sur = shutil.which("suricata")
eve = tempfile.mkdtemp(prefix="speed-suricata-")
tools = [
    ("cat (warm)", pin + ["cat", mix]),
    ("shadowgate 1 thread", pin + [bin_, "replay", "--policy", "policies", "-q", mix]),
    ("shadowgate 2 threads", pin2 + [bin_, "replay", "--policy", "policies", "-q", "--threads", "2", mix]),
    # The curve past the core count (2 here): the reader and merger thread plus N shards.
    ("shadowgate 3 threads", pin2 + [bin_, "replay", "--policy", "policies", "-q", "--threads", "3", mix]),
    ("shadowgate 4 threads", pin2 + [bin_, "replay", "--policy", "policies", "-q", "--threads", "4", mix]),
]
if sur:
    tools.append(("suricata 7 (single)", pin + [sur, "-c", "bench/suricata-speed.yaml", "-S", "/dev/null",
        "-k", "none", "--runmode", "single", "-l", eve, "-r", mix]))
else:
    print("suricata not installed (apt-get -t bookworm-backports install suricata): no Suricata baseline")
# Same output on one and more threads?
one = subprocess.run(tools[1][1], capture_output=True, check=True).stdout
same = all(subprocess.run(t[1], capture_output=True, check=True).stdout == one for t in tools[2:5])
lines = one.count(b"\n")
print(f"output of 1, 2, 3 and 4 threads identical: {same} ({lines} lines)")
subprocess.run(["cat", mix], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
times = {name: [] for name, _ in tools}
cpu = {name: [] for name, _ in tools}
for r in range(runs):
    for name, cmd in tools:
        for f in os.listdir(eve):
            os.unlink(os.path.join(eve, f))
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        times[name].append(time.perf_counter() - t)
        cpu[name].append(ru.ru_utime + ru.ru_stime)
        if status != 0:
            sys.exit(f"{name} failed: {cmd}")
size = os.path.getsize(mix)
print(f"capture: {mix}: {n} packets, {size/1e6:.0f} MB; {runs} runs each; load now {open('/proc/loadavg').read().split()[:3]}")
print(f"{'tool':<24}{'median s':>10}{'best s':>9}{'worst s':>9}{'Mpkt/s':>9}{'CPU s (median)':>16}")
med, mcpu = {}, {}
for name, ts in times.items():
    med[name] = statistics.median(ts)
    mcpu[name] = statistics.median(cpu[name])
    print(f"{name:<24}{med[name]:>10.3f}{min(ts):>9.3f}{max(ts):>9.3f}{n/med[name]/1e6:>9.2f}{mcpu[name]:>16.3f}")
def ratios(label, m):
    sg1, sg2, cat = m["shadowgate 1 thread"], m["shadowgate 2 threads"], m["cat (warm)"]
    print(f"ratios ({label}):")
    if sur:
        s = m["suricata 7 (single)"]
        print(f"  suricata / shadowgate 1 thread = {s/sg1:.2f}x   (target >= 4)")
    print(f"  shadowgate 1 thread / cat      = {sg1/cat:.2f}x   (target <= 2)")
    if label.startswith("wall"):
        print(f"  shadowgate 1 / 2 threads       = {sg1/sg2:.2f}x   (target >= 1.4)")
        print(f"  curve (1 thread / N threads): " + ", ".join(
            f"{k}: {sg1/m[f'shadowgate {k} threads']:.2f}x" for k in (2, 3, 4)))
    else:
        print(f"  shadowgate 2 threads / 1 thread CPU = {sg2/sg1:.2f}x   (the cost of sharding)")
ratios("wall time, medians", med)
ratios("CPU time user+sys, medians: what a loaded machine does not distort", mcpu)
shutil.rmtree(eve, ignore_errors=True)
PY
fi

# One replay: CPU seconds (user + system), peak anonymous memory and peak RSS (KiB, /proc polled).
# CPU time rather than wall time: on a shared machine it does not count the waits for a CPU.
measure() { # capture, extra args...
  local f=$1
  shift
  python3 - "$BIN" "$f" "$@" <<'PY'
import os, subprocess, sys, time
bin_, f, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
p = subprocess.Popen([bin_, "replay", "--policy", "policies", "-q", *extra, f],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
anon = rss = 0
while True:
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("RssAnon:"):
                anon = max(anon, int(line.split()[1]))
            if line.startswith("VmHWM:"):
                rss = max(rss, int(line.split()[1]))
    except OSError:
        pass
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        break
    time.sleep(0.01)
if status != 0:
    sys.exit(f"replay of {f} failed")
print(f"{ru.ru_utime + ru.ru_stime:.4f} {anon} {rss}")
PY
}

best_of() { # runs, capture, extra args... -> least CPU time, the largest anon and peak RSS (KiB)
  local runs=$1 f=$2 best="" anon=0 rss=0
  shift 2
  for _ in $(seq "$runs"); do
    read -r w a r < <(measure "$f" "$@")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $w < $best else 1)"; then best=$w; fi
    [ "$a" -gt "$anon" ] && anon=$a
    [ "$r" -gt "$rss" ] && rss=$r
  done
  echo "$best $anon $rss"
}

if [ "$WHAT" = all ] || [ "$WHAT" = classes ]; then
  echo "cost per packet class (CPU time, best of $RUNS, one thread, startup subtracted):"
  base=$OUT/empty.pcap
  [ -s "$base" ] || "$GEN/gen_speed" "$base" syn 1
  read -r t0 _ _ < <(best_of "$RUNS" "$base")
  printf "  %-44s %8s %10s\n" class packets ns/packet
  for spec in "syn 1000000 new flow (SYN)" "dns 1000000 DNS (query or answer)" \
              "hello 500000 TLS ClientHello (its flow's first packet)" \
              "quic 200000 QUIC client Initial (its flow's first packet)"; do
    set -- $spec
    c=$1 n=$2
    shift 2
    f=$OUT/class-$c-$n.pcap
    [ -s "$f" ] || "$GEN/gen_speed" "$f" "$c" "$n"
    read -r t _ _ < <(best_of "$RUNS" "$f" --max-flows 2000000)
    printf "  %-44s %8s %10.0f\n" "$*" "$n" "$(python3 -c "print(($t - $t0) / $n * 1e9)")"
  done
fi

if [ "$WHAT" = all ] || [ "$WHAT" = flows ]; then
  B=${BULK:-12000000}
  echo "concurrent flows: bulk cost (CPU time; 64-byte segments of done flows, $B of them round robin) and memory (best of $RUNS):"
  base=$OUT/empty.pcap
  [ -s "$base" ] || "$GEN/gen_speed" "$base" syn 1
  read -r _ a0 _ < <(best_of 1 "$base")
  echo "  (an empty replay holds $((a0 / 1024)) MiB of anonymous memory: subtracted per flow)"
  printf "  %-10s %14s %14s %14s %12s\n" flows "bulk ns/packet" "peak RSS MiB" "peak anon MiB" "anon B/flow"
  for fl in $FLOWS; do
    s=$OUT/setup-$fl.pcap b=$OUT/bulk-$fl-$B.pcap
    [ -s "$s" ] || "$GEN/gen_speed" "$s" setup 0 "$fl"
    [ -s "$b" ] || "$GEN/gen_speed" "$b" bulk "$B" "$fl"
    mf=$((fl + fl / 4 + 1000))
    read -r ts _ _ < <(best_of "$RUNS" "$s" --max-flows "$mf")
    read -r tb ab rb < <(best_of "$RUNS" "$b" --max-flows "$mf")
    printf "  %-10s %14.1f %14.1f %14.1f %12.0f\n" "$fl" "$(python3 -c "print(($tb - $ts) / $B * 1e9)")" \
      "$(python3 -c "print($rb / 1024)")" "$(python3 -c "print($ab / 1024)")" "$(python3 -c "print(($ab - $a0) * 1024 / $fl)")"
  done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
