#!/usr/bin/env bash
# Daemon memory with 100,000 active flows: `shadowgate run` captures on a veth in a gateway
# namespace while tcpreplay sends FLOWS concurrent TCP flows (handshake, ClientHello for an
# uncatalogued name, one server segment each); then /metrics and /proc/PID/status are read.
#
#   bench/daemon-rss.sh            (FLOWS=100000 THREADS=1 RING_MIB=64 PPS=100000)
#
# Namespaces `sgrss-s-PID` / `sgrss-g-PID` (veth `rss0` / `rsg0`, no addresses) are made here
# and deleted on exit. Prints, before and after the replay: shadowgate_flows_active, VmRSS,
# VmHWM and its parts RssAnon (the daemon's own memory), RssFile (mostly the TPACKET_V3 ring,
# RING_MIB per interface, split over its capture threads, mapped and populated at start) and RssShmem; frames sent,
# counted and dropped by the kernel (a valid run has no loss). Target: VmHWM < 128 MiB.
# Needs root, iproute2, ethtool, tcpreplay, curl. Results: bench-out/daemon-rss/results.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
OUT=bench-out/daemon-rss
mkdir -p "$OUT"
FLOWS=${FLOWS:-100000}
THREADS=${THREADS:-1}
RING_MIB=${RING_MIB:-64}
PPS=${PPS:-100000}
for tool in ip ethtool tcpreplay curl; do
  command -v $tool >/dev/null || { echo "daemon-rss.sh: needs $tool (apt-get install iproute2 ethtool tcpreplay curl)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "daemon-rss.sh: needs root (namespaces, packet sockets)" >&2; exit 1; }
if [ -z "${NOBUILD:-}" ]; then
  cargo build --release --quiet --bin shadowgate --example gen_live
fi
PCAP=$OUT/flows-$FLOWS.pcap
[ -s "$PCAP" ] || "$T/release/examples/gen_live" flows "$PCAP" "$FLOWS"

S=sgrss-s-$$
G=sgrss-g-$$
WORK=$(mktemp -d /tmp/sgrss.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$G" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$S"
ip netns add "$G"
ip -n "$S" link add rss0 type veth peer name rsg0 netns "$G"
for ns in "$S" "$G"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$S" link set rss0 up
ip -n "$G" link set rsg0 up
ip netns exec "$S" ethtool -K rss0 tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "$G" ethtool -K rsg0 tso off gso off gro off >/dev/null 2>&1 || true

METRICS=127.0.0.1:9818
mkdir -p "$WORK/store"
cat > "$WORK/shadowgate.toml" <<EOF
[sensor]
id = "rssbench"

[policy]
dir = "$PWD/policies"

[store]
path = "$WORK/store/events.db"

[capture]
interfaces = ["rsg0"]
threads = $THREADS
ring_mib = $RING_MIB
stats_interval_s = 1

[enforce]
mode = "monitor"
break_glass_file = "$WORK/glass"

[metrics]
listen = "$METRICS"
EOF

metric() {
  ip netns exec "$G" curl -s --max-time 3 "http://$METRICS/metrics" |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d\n", s}'
}
mem() { # VmRSS VmHWM RssAnon RssFile RssShmem in MiB
  awk '/^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem):/ {printf "%s %.1f MiB  ", $1, $2/1024} END {print ""}' "/proc/$PID/status"
}

ip netns exec "$G" "$T/release/shadowgate" run --config "$WORK/shadowgate.toml" >"$WORK/out" 2>"$WORK/err" &
PID=$!
for _ in $(seq 150); do
  ip netns exec "$G" curl -sf --max-time 1 "http://$METRICS/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
kill -0 "$PID" 2>/dev/null || { echo "daemon-rss.sh: the daemon did not start:" >&2; cat "$WORK/err" >&2; exit 1; }
sleep 1
{
  echo "daemon-rss: $FLOWS flows, threads $THREADS, ring $RING_MIB MiB/interface, $PPS pps; $(nproc) cores, $(uname -r)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "idle:  flows_active $(metric shadowgate_flows_active)  $(mem)"
} | tee "$OUT/results.txt"
ip netns exec "$S" tcpreplay -i rss0 -K --pps="$PPS" "$PCAP" >"$WORK/replay.out" 2>&1 || { cat "$WORK/replay.out" >&2; exit 1; }
sleep 2
sent=$(awk '/Successful packets:/ {print $3}' "$WORK/replay.out")
{
  echo "after: flows_active $(metric shadowgate_flows_active)  $(mem)"
  echo "frames sent $sent, counted $(metric shadowgate_frames_total), kernel drops $(metric shadowgate_kernel_drops_total); flows created $(metric shadowgate_flows_created_total), evicted $(metric shadowgate_flow_evictions_total)"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$OUT/results.txt"
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$PID/status")
active=$(metric shadowgate_flows_active)
if [ "$active" -lt "$FLOWS" ]; then
  echo "daemon-rss.sh: only $active of $FLOWS flows active (frames lost or flows evicted?)" >&2
  exit 1
fi
[ "$hwm" -lt $((128 * 1024)) ] && echo "VmHWM $((hwm / 1024)) MiB: under the 128 MiB target" || echo "VmHWM $((hwm / 1024)) MiB: OVER the 128 MiB target"
