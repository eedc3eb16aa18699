#!/usr/bin/env bash
# The sensor under floods: replays each flood capture with the default limits and the bundled
# policy, as a gateway would run, and prints a table of packets, wall time, peak RSS,
# observations, decisions and what the limits evicted or dropped (from --stats).
#
#   bench/floods.sh [DIVISOR] [NAME...]
#
# Captures (examples/gen_floods.rs, fixed seeds) are written once into bench-out/floods/ (about
# 1.5 GB; FORCE=1 rewrites them). DIVISOR divides every count for a quick run (default 1: one
# million SYNs, one million random-subdomain queries, 100,000 half-sent hellos, 500,000 lone
# first fragments, 6,000 DNS bombs = 100/s for 60 s). NAMEs: syn-flood dns-random half-hello
# frag-flood dns-bomb-flood. Each replay is stopped after TIMEOUT seconds (default 600): a
# stopped replay prints no --stats, so its row shows the packets in the file and "timeout".
# REPORT_ONLY=1 prints the table of the last run again without replaying.
# Peak RSS includes the pages of the memory-mapped capture that were read (up to "file MiB").
# Needs /usr/bin/time (Debian: time).
set -euo pipefail
cd "$(dirname "$0")/.."
DIV=${1:-1}
shift || true
NAMES=${*:-syn-flood dns-random half-hello frag-flood dns-bomb-flood}
TIMEOUT=${TIMEOUT:-600}
T=${CARGO_TARGET_DIR:-target}
OUT=bench-out/floods
[ "$DIV" = 1 ] || OUT="$OUT-div$DIV"
mkdir -p "$OUT"
[ -x /usr/bin/time ] || { echo "floods.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
RES="$OUT/results"
if [ -z "${REPORT_ONLY:-}" ]; then
cargo build --release --quiet --bin shadowgate --example gen_floods
for n in $NAMES; do
  if [ -n "${FORCE:-}" ] || [ ! -s "$OUT/$n.pcap" ]; then
    "$T/release/examples/gen_floods" "$OUT" "$DIV" "$n"
  fi
done
mkdir -p "$RES"
for n in $NAMES; do
  f="$OUT/$n.pcap"
  echo "replaying $f ..." >&2
  # stdout (one decision per line) is counted, not kept.
  set +e
  /usr/bin/time -v -o "$RES/$n.time" timeout "$TIMEOUT" \
    "$T/release/shadowgate" replay --policy policies --emit decisions --stats -q "$f" \
    2> "$RES/$n.stderr" | wc -lc > "$RES/$n.out" &
  # Peak anonymous memory (the sensor's own state): "peak RSS" also counts the pages of the
  # memory-mapped capture, which the kernel can drop at will.
  ( peak=0
    sleep 0.05
    while pid=$(pgrep -n -f "release/shadowgate replay --policy policies --emit decisions --stats -q $f"); do
      a=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "${a:-0}" -gt "$peak" ] && peak=$a
      sleep 0.02
    done
    echo "$peak" > "$RES/$n.anon" ) &
  wait
  rc=$(awk '/Exit status/ {print $3}' "$RES/$n.time")
  echo "${rc:-1}" > "$RES/$n.rc"
  set -e
done
fi
python3 - "$RES" $NAMES <<'PY'
import json, os, re, sys
res, names = sys.argv[1], sys.argv[2:]
def frames(path):
    # pcap record count without reading payloads
    import struct
    n, pos, size = 0, 24, os.path.getsize(path)
    with open(path, "rb") as f:
        while pos + 16 <= size:
            f.seek(pos + 8)
            pos += 16 + struct.unpack("<I", f.read(4))[0]
            n += 1
    return n
hdr = ["capture", "packets", "file MiB", "exit", "wall s", "peak RSS MiB", "peak anon MiB", "observations", "decisions", "output MB",
       "flows created", "flows evicted", "flows expired", "reassembly budget exceeded", "names inserted", "names evicted",
       "fragments", "fragments evicted", "fragments expired", "fragments reassembled"]
rows = []
for n in names:
    t = open(os.path.join(res, n + ".time")).read()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", t)
    secs = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall else 0
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    rc = open(os.path.join(res, n + ".rc")).read().strip()
    try:
        anon = f'{int(open(os.path.join(res, n + ".anon")).read().strip() or 0) / 1024:.0f}'
    except (OSError, ValueError):
        anon = "-"
    lines, nbytes = (int(x) for x in open(os.path.join(res, n + ".out")).read().split())
    err = open(os.path.join(res, n + ".stderr"), errors="replace").read()
    st = None
    if "{" in err:
        try:
            st = json.loads(err[err.index("{"):err.rindex("}") + 1])
        except ValueError:
            pass
    status = {"0": "ok", "124": "timeout"}.get(rc, rc)
    pk = st["frames"] if st else f"~{frames(os.path.join(os.path.dirname(res), n + '.pcap'))} in file"
    def g(*k):
        v = st
        for x in k:
            if not isinstance(v, dict) or x not in v:
                return "-"
            v = v[x]
        return v
    obs = sum(st["observations"].values()) if st else "-"
    fmib = os.path.getsize(os.path.join(os.path.dirname(res), n + ".pcap")) / 2**20
    rows.append([n, pk, f"{fmib:.0f}", status, f"{secs:.1f}", f"{rss:.0f}", anon, obs, lines, f"{nbytes / 1e6:.1f}",
                 g("flows", "created"), g("flows", "evicted"), g("flows", "expired"), g("flows", "reassembly_budget_exceeded"),
                 g("names", "inserted"), g("names", "evicted"),
                 g("fragments", "fragments"), g("fragments", "evicted"), g("fragments", "expired"), g("fragments", "reassembled")])
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
for r in [hdr] + rows:
    print(" | ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r)))
PY
