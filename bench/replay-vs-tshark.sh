#!/usr/bin/env bash
# Whole-process timing of `shadowgate replay` against `tshark -r` on the same large synthetic
# capture, in the same run, both pinned to one core. Prints packets/s, MB/s and ratios.
# Usage: bench/replay-vs-tshark.sh [PACKETS]   (default 2,000,000; needs tshark installed)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000000}
OUT=bench-out
mkdir -p "$OUT"
cargo build --release --quiet --bin shadowgate --example gen_capture
F="$OUT/bench-$N.pcap"
[ -s "$F" ] || target/release/examples/gen_capture "$F" "$N"
command -v tshark >/dev/null || { echo "tshark not installed: apt-get install tshark" >&2; exit 1; }

python3 - "$F" "$N" <<'PY'
import os, subprocess, sys, time
f, n = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(f)
def run(cmd, reps):
    best = None
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    return best
pin = ["taskset", "-c", "0"]
subprocess.run(["cat", f], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
rows = [
    ("cat (read the file)", run(pin + ["cat", f], 3)),
    ("shadowgate replay", run(pin + ["target/release/shadowgate", "replay", "-q", f], 3)),
    ("tshark -r (names only)", run(pin + ["tshark", "-n", "-r", f, "-T", "fields",
        "-e", "dns.qry.name", "-e", "tls.handshake.extensions_server_name", "-e", "http.host"], 1)),
]
sg = rows[1][1]
print(f"capture: {f}: {n} packets, {size/1e6:.0f} MB")
print(f"{'tool':<26}{'seconds':>9}{'Mpkt/s':>9}{'MB/s':>9}{'time / shadowgate':>19}")
for name, t in rows:
    print(f"{name:<26}{t:>9.3f}{n/t/1e6:>9.2f}{size/t/1e6:>9.0f}{t/sg:>19.2f}")
PY
