#!/usr/bin/env bash
# DNS mode throughput: shadowgate's resolver vs dnsmasq forwarding to the same upstream, same run.
# Namespaces: client (dnsperf) -- gateway (both resolvers) -- upstream (dnsmasq, static zone).
#
# Usage (root): bash bench/dns.sh [seconds per run, default 10] [rounds, default 2]
# Prints queries per second for cache hits (a small set of names asked again and again, after a
# warm-up) and cache misses (every name new, so each is forwarded upstream), and the ratios.
# shadowgate runs with the bundled policy in enforce mode and its rate limit raised.
set -euo pipefail

DUR=${1:-10}
ROUNDS=${2:-2}
[ "$(id -u)" = 0 ] || { echo "bench/dns.sh: run as root (it creates network namespaces)" >&2; exit 1; }
for t in dnsperf dnsmasq ip; do
    command -v "$t" >/dev/null || { echo "bench/dns.sh: $t missing: apt-get install dnsperf dnsmasq iproute2" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
# BIN: a shadowgate binary to measure instead of this tree's release build (e.g. an older one, to
# compare two builds in the same conditions).
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --bin shadowgate >&2)
    BIN=$CARGO_TARGET_DIR/release/shadowgate
fi

S=$(printf '%04x' $((RANDOM % 65536)))
C=sgdns-c$S G=sgdns-g$S U=sgdns-u$S
TMP=$(mktemp -d /tmp/sgdns-bench.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for n in "$C" "$G" "$U"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for n in "$C" "$G" "$U"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add sgc$S type veth peer name sgg$S
ip link add sgu$S type veth peer name sgh$S
ip link set sgc$S netns "$C"; ip link set sgg$S netns "$G"
ip link set sgh$S netns "$G"; ip link set sgu$S netns "$U"
ip -n "$C" addr add 10.53.1.2/24 dev sgc$S; ip -n "$C" link set sgc$S up
ip -n "$G" addr add 10.53.1.1/24 dev sgg$S; ip -n "$G" link set sgg$S up
ip -n "$G" addr add 10.53.2.1/24 dev sgh$S; ip -n "$G" link set sgh$S up
ip -n "$U" addr add 10.53.2.2/24 dev sgu$S; ip -n "$U" link set sgu$S up

# Upstream: an authoritative answer for every name under bench.test, at once.
ip netns exec "$U" dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
    --listen-address=10.53.2.2 --bind-interfaces --port=53 --address=/bench.test/192.0.2.1 \
    --local-ttl=3600 --user=root --pid-file="$TMP/up.pid" &
PIDS+=($!)

# Gateway resolver 1: dnsmasq forwarding (cache and forward limits raised to match shadowgate).
ip netns exec "$G" dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
    --listen-address=10.53.1.1 --bind-interfaces --port=5300 --server=10.53.2.2 \
    --cache-size=10000 --dns-forward-max=4096 --user=root --pid-file="$TMP/gw.pid" &
PIDS+=($!)

# Gateway resolver 2: shadowgate's DNS mode.
cat >"$TMP/sg.toml" <<CONF
[sensor]
id = "bench"
[policy]
dir = "$ROOT/policies"
[store]
path = "$TMP/events.db"
[enforce]
mode = "enforce"
break_glass_file = "$TMP/glass"
[dns]
listen = ["10.53.1.1:53"]
upstreams = ["10.53.2.2:53"]
clients = ["10.53.0.0/16"]
rate_per_client = 100000000
cache_size = 10000
max_inflight = 4096
[portal]
address = "10.53.1.1"
CONF
ip netns exec "$G" "$BIN" run --config "$TMP/sg.toml" 2>"$TMP/sg.log" &
PIDS+=($!)
for _ in $(seq 50); do grep -q "shadowgate: running" "$TMP/sg.log" && break; sleep 0.2; done
grep -q "shadowgate: running" "$TMP/sg.log" || { cat "$TMP/sg.log" >&2; exit 1; }

# Query files: 100 names for hits, a million fresh names per resolver and round for misses.
for i in $(seq 1 100); do echo "h$i.bench.test A"; done >"$TMP/hits.txt"

qps() { # port file tag -> queries per second (dnsperf's report kept in $TMP/tag.out)
    ip netns exec "$C" dnsperf -s 10.53.1.1 -p "$1" -d "$2" -l "$DUR" -c 8 -q 400 -T 1 >"$TMP/$3.out" 2>&1 || true
    awk '/Queries per second/ {print $4}' "$TMP/$3.out"
}
lost() { # tag -> "lost N (P%)"
    awk '/Queries lost/ {print "lost", $3, $4}' "$TMP/$1.out"
}

declare -A SUM
for r in $(seq 1 "$ROUNDS"); do
    for who in dnsmasq:5300 shadowgate:53; do
        name=${who%%:*}; port=${who##*:}
        # Warm the cache, then measure hits.
        ip netns exec "$C" dnsperf -s 10.53.1.1 -p "$port" -d "$TMP/hits.txt" -n 2 -q 50 >/dev/null 2>&1
        h=$(qps "$port" "$TMP/hits.txt" hits)
        awk -v n="$name" -v r="$r" 'BEGIN { for (i = 1; i <= 1000000; i++) printf "m%s-%s-%d.bench.test A\n", n, r, i }' >"$TMP/miss.txt"
        m=$(qps "$port" "$TMP/miss.txt" miss)
        echo "round $r  $name  hits ${h} qps ($(lost hits))  misses ${m} qps ($(lost miss))"
        SUM[$name-h]=$(echo "${SUM[$name-h]:-0} + $h" | bc -l)
        SUM[$name-m]=$(echo "${SUM[$name-m]:-0} + $m" | bc -l)
    done
done
printf 'mean over %d rounds of %ds:\n' "$ROUNDS" "$DUR"
for k in h m; do
    label=$([ $k = h ] && echo "cache hits  " || echo "cache misses")
    d=$(echo "${SUM[dnsmasq-$k]} / $ROUNDS" | bc -l)
    s=$(echo "${SUM[shadowgate-$k]} / $ROUNDS" | bc -l)
    printf '%s  dnsmasq %10.0f qps  shadowgate %10.0f qps  ratio %.2f\n' "$label" "$d" "$s" "$(echo "$s / $d" | bc -l)"
done
echo "shadowgate counters at the end:"
kill -INT "${PIDS[2]}"; sleep 0.5; tail -1 "$TMP/sg.log"
