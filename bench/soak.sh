#!/usr/bin/env bash
# The soak (issue 25): the whole daemon (`shadowgate run`: enforce mode, DNS mode, portal, metrics,
# a RELP sink to rsyslogd/imrelp and a jsonl file sink) between simulated clinic clients and a
# simulated internet, under load (examples/soak_load.rs) and faults on a schedule scaled to the
# run's length; then a table of assertions, each with its figure, and a last line `soak: ...`.
# Exit 0 only when every assertion holds. docs/src/soak.md explains the table.
#
#   bench/soak.sh --minutes N [--rate CONN_PER_S] [--qrate QUERIES_PER_S]
#
# Run as root. Namespaces `sgsoak-{c,g,i}-PID`, a tmpfs for the store, rsyslogd, the daemon and the
# generator are made here and removed on exit (also on Ctrl-C). SHADOWGATE=path and
# SOAK_LOAD=path use given binaries; otherwise target/ci's are used, built if missing. KEEP=1
# keeps the work folder (the store copied into it) for a look after the run.
# Needs iproute2, rsyslog + rsyslog-relp, python3, curl (dumpcap for the reset latency).
# Output: bench-out/soak/ (the table, the daemon log, the timeline, gauges.log: state and memory).
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=2 RATE=2000 QRATE=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MIN=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --qrate) QRATE=$2; shift 2 ;;
    *) echo "soak.sh: unknown argument $1 (--minutes N [--rate R] [--qrate Q])" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root (namespaces, mounts, packet sockets)" >&2; exit 2; }
RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
[ -x "$RSYSLOGD" ] || { echo "soak.sh: needs rsyslogd with imrelp (apt-get install rsyslog rsyslog-relp)" >&2; exit 2; }
for t in ip curl python3; do command -v $t >/dev/null || { echo "soak.sh: needs $t" >&2; exit 2; }; done
T=${CARGO_TARGET_DIR:-target}
SG=${SHADOWGATE:-$T/ci/shadowgate}
LOAD=${SOAK_LOAD:-$T/ci/examples/soak_load}
[ -x "$SG" ] || cargo build --profile ci --quiet --bin shadowgate
[ -x "$LOAD" ] || cargo build --profile ci --quiet --example soak_load
SG=$(realpath "$SG"); LOAD=$(realpath "$LOAD")

D=$((MIN * 60))
# State lifetimes. The daemon's state is bounded by its limits and by how long an entry lives
# (TCP flows 300 s idle, UDP 60 s, names the DNS TTL + 120 s, stopped flows 120 s): it reaches its
# steady state (and its memory its plateau) only after the longest lifetime. A run shorter than
# an hour scales them down to LIFE = D/12 (at least 10 s; names: TTL and grace LIFE/2 each) so
# that the steady state comes within the warm-up and a flood's state is gone before the next
# kill; from an hour on the daemon runs its defaults. WARM: the memory row's warm-up, the longest
# lifetime plus 10 s, at least 10 % of the run.
LIFE=$(( D / 12 < 10 ? 10 : D / 12 ))
if [ "$LIFE" -ge 300 ]; then TCP_IDLE=300 UDP_IDLE=60 TTL=60 GRACE=120 FLOW_S=120
else TCP_IDLE=$LIFE UDP_IDLE=$(( LIFE < 60 ? LIFE : 60 )) TTL=$(( LIFE / 2 < 60 ? LIFE / 2 : 60 ))
  GRACE=$(( LIFE / 2 < 120 ? LIFE / 2 : 120 )) FLOW_S=$(( LIFE < 120 ? LIFE : 120 )); fi
LONGEST=$(( TCP_IDLE > TTL + GRACE ? TCP_IDLE : TTL + GRACE ))
LONGEST=$(( FLOW_S > LONGEST ? FLOW_S : LONGEST ))
WARM=$(( LONGEST + 10 > D / 10 ? LONGEST + 10 : D / 10 ))
OUT=bench-out/soak
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
C=sgsoak-c-$$ G=sgsoak-g-$$ I=sgsoak-i-$$
WORK=$(mktemp -d /tmp/sgsoak.XXXXXX)
chmod 755 "$WORK"
STORE=$WORK/store
METRICS=127.0.0.1:9819
RELP_PORT=20514
GW=10.20.1.1 UPSTREAM=10.99.2.53
PIDS=() DPID= RSPID= DNSPID=
TL=$WORK/timeline   # "ms-since-epoch what ..." lines: the faults and the samples

cleanup() {
  trap - EXIT INT TERM
  [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null || true
  [ -n "$RSPID" ] && kill -9 "$RSPID" 2>/dev/null || true
  [ -n "$DNSPID" ] && kill "$DNSPID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "$C" "$G" "$I"; do ip netns del "$ns" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && cp -f "$STORE/events.db" "$WORK/events.db" 2>/dev/null
  umount "$STORE" 2>/dev/null || true
  cp -f "$WORK"/{daemon.log,timeline,load.out,rsyslogd.log,gauges.log} "$WORK"/stacks.* "$OUT/" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "soak.sh: work folder kept: $WORK (store copied to events.db)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s%3N; }
mark() { echo "$(now) $*" >> "$TL"; }

# --- namespaces: client (200 load addresses) -- lan0 [gateway] wan0 -- internet ---
for ns in "$C" "$G" "$I"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$C" link add eth0 type veth peer name lan0 netns "$G"
ip -n "$G" link add wan0 type veth peer name eth0 netns "$I"
{
  for i in $(seq 10 209) 250 251 252; do echo "addr add 10.20.1.$i/24 dev eth0"; done
} | ip -n "$C" -batch -
ip -n "$C" link set eth0 up
ip -n "$C" route add default via $GW
ip -n "$G" addr add $GW/24 dev lan0
ip -n "$G" addr add 10.99.2.1/24 dev wan0
ip -n "$G" link set lan0 up
ip -n "$G" link set wan0 up
for i in 2 3 4 5 6 7 8 9 20 53; do ip -n "$I" addr add 10.99.2.$i/24 dev eth0; done
ip -n "$I" link set eth0 up
ip -n "$I" route add 10.20.1.0/24 via 10.99.2.1
ip netns exec "$G" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$C" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
for x in "$C eth0" "$G lan0" "$G wan0" "$I eth0"; do
  set -- $x; ip netns exec "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || true
done

# --- the simulated internet: sinks and the upstream DNS (20 ms away) ---
ip netns exec "$I" sysctl -qw net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192
"$LOAD" sinks "$I" 10.99.2.2 10.99.2.3 10.99.2.4 10.99.2.5 10.99.2.6 10.99.2.7 10.99.2.8 10.99.2.9 > "$WORK/sinks.log" 2>&1 &
PIDS+=($!)
start_dns() { "$LOAD" dns "$I" $UPSTREAM:53 20 "$TTL" >> "$WORK/dns.log" 2>&1 & DNSPID=$!; }
start_dns

# --- the store on a small file system of its own (filled and freed later) ---
mkdir -p "$STORE"
mount -t tmpfs -o size=1536m,mode=0700 tmpfs "$STORE"

# --- rsyslogd with imrelp in the gateway namespace (direct queue: written before acknowledged) ---
mkdir -p "$WORK/rsyslog-work"
cat > "$WORK/rsyslog.conf" <<EOF
global(workDirectory="$WORK/rsyslog-work")
module(load="imrelp")
template(name="whole" type="string" string="%rawmsg%\n")
ruleset(name="fromrelp" queue.type="Direct") {
  action(type="omfile" file="$WORK/received.log" template="whole")
}
input(type="imrelp" address="127.0.0.1" port="$RELP_PORT" ruleset="fromrelp")
EOF
start_rsyslog() {
  rm -f "$WORK/rsyslogd.pid"
  ip netns exec "$G" "$RSYSLOGD" -n -f "$WORK/rsyslog.conf" -i "$WORK/rsyslogd.pid" >> "$WORK/rsyslogd.log" 2>&1 &
  RSPID=$!
}
start_rsyslog

# --- policy: the bundled catalogue; steer, block, coach, alert, allow ---
mkdir -p "$WORK/policies"
cp -r policies/catalog "$WORK/policies/"
write_policy() { # $1: a comment line that makes each reload a change
  cat > "$WORK/policies/policy.toml" <<EOF
# $1
[settings]
default_action = "alert"
default_severity = "medium"

[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's AI assistant."

[[rule]]
id = "S-100-approved"
services = ["aws-bedrock"]
action = "allow"
severity = "info"

[[rule]]
id = "S-150-block"
services = ["deepseek"]
action = "block"
severity = "high"

[[rule]]
id = "S-160-coach"
services = ["gemini"]
action = "coach"
severity = "medium"

[[rule]]
id = "S-200-enterprise-api"
categories = ["enterprise_ai_api"]
action = "alert"
severity = "low"

[[rule]]
id = "S-300-consumer-ai"
categories = ["consumer_ai"]
action = "steer"
steer_to = "approved"
severity = "medium"
EOF
}
write_policy "soak policy 0"

cat > "$WORK/shadowgate.toml" <<EOF
[sensor]
id = "soak-gw"
tcp_idle_s = $TCP_IDLE
udp_idle_s = $UDP_IDLE
name_grace_s = $GRACE

[policy]
dir = "$WORK/policies"

[store]
path = "$STORE/events.db"
batch = 1000

[[sink]]
name = "relp"
type = "syslog"
transport = "relp"
address = "127.0.0.1:$RELP_PORT"

[[sink]]
name = "file"
type = "jsonl"
path = "$WORK/events.jsonl"

[capture]
interfaces = ["lan0"]
stats_interval_s = 1

[enforce]
mode = "enforce"
flow_timeout_s = $FLOW_S
break_glass_file = "$WORK/glass"

[dns]
listen = ["$GW:53"]
upstreams = ["$UPSTREAM:53"]
clients = ["10.20.1.0/24"]
rate_per_client = 200
upstream_timeout_ms = 1000

[portal]
address = "$GW"
grant_minutes = 120
rate_per_client = 600

[metrics]
listen = "$METRICS"
EOF

healthz() { ip netns exec "$G" curl -s --max-time 2 "http://$METRICS/healthz" 2>/dev/null || true; }
start_daemon() {
  ip netns exec "$G" "$SG" run --config "$WORK/shadowgate.toml" >> "$WORK/daemon.log" 2>&1 &
  DPID=$!
  mark start "$DPID"
  for _ in $(seq 300); do
    case "$(healthz)" in *'"status":"ok"'*|*'"status":"degraded"'*) mark healthy "$DPID"; return 0 ;; esac
    kill -0 "$DPID" 2>/dev/null || { echo "soak.sh: the daemon did not start:" >&2; tail -20 "$WORK/daemon.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "soak.sh: the daemon is not healthy after 30 s" >&2; tail -20 "$WORK/daemon.log" >&2; exit 1
}
start_daemon

# --- samplers: RSS, CPU, metrics, health every 2 s ---
(
  # One unreadable /proc file (a killed daemon is a zombie until it is reaped) must not end the
  # samples: the rows that read them would judge the run on the first instance alone.
  set +e +o pipefail
  while sleep 2; do
    p=$DPID
    [ -r "/proc/$p/status" ] || p=$(pgrep -n -f " run --config $WORK/shadowgate.toml" || true)
    [ -n "$p" ] || continue
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    cpu=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    all=$(ip netns exec "$G" curl -s --max-time 2 "http://$METRICS/metrics" 2>/dev/null || true)
    m=$(echo "$all" |
      awk '$1 ~ /^shadowgate_kernel_drops_total/ {d += $2} $1 == "shadowgate_events_lost_store_full_total" {l = $2} $1 == "shadowgate_events_dropped_total" {q = $2} END {printf "%d %d %d", d, l, q}')
    # What the memory is made of, for the memory row's explanation: the state gauges and
    # /proc/PID/smaps_rollup, one line a sample in gauges.log.
    { printf '%s %s' "$(now)" "$p"
      echo "$all" | awk '$1 ~ /^shadowgate_(flows_active|dns_cache_entries|event_queue_depth|events_held|sink_queue_depth|devices_known|devices_neighbours|portal_grants_active|flows_stopped_total|flows_created_total|flow_evictions_total|heap_bytes)/ {sub(/^shadowgate_/, "", $1); printf " %s=%s", $1, $2}'
      awk '/^(Rss|Anonymous|Shared_Clean|Private_Dirty):/ {printf " %s=%s", $1, $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true
      echo; } >> "$WORK/gauges.log"
    # Health: the status, then the upstream's part and the stop-entry quota's (what degrades).
    h=$(healthz | python3 -c 'import json,sys
try:
    j = json.load(sys.stdin); print(j["status"], j.get("dns", "-"), j.get("quota", "-"))
except Exception: print("none - -")')
    echo "$(now) sample $p $rss $cpu ${m:-0 0 0} $h" >> "$TL"
    # A stuck daemon: its threads' stacks, once per process, for the report (needs gdb).
    if [ "${h%% *}" = failing ] && [ ! -e "$WORK/stacks.$p" ] && command -v gdb >/dev/null; then
      healthz > "$WORK/stacks.$p"
      timeout 60 gdb -p "$p" -batch -ex "thread apply all bt 12" >> "$WORK/stacks.$p" 2>&1 || true
    fi
  done
) &
PIDS+=($!)

# --- restart probes: a stopped 4-tuple and a coach grant ---
STOP_CLIENT=10.20.1.251 GRANT_CLIENT=10.20.1.250 CONTROL_CLIENT=10.20.1.252
probe_before() { # $1: the source port of this round's stopped connection
  local a b
  a=$("$LOAD" tls "$C" "$STOP_CLIENT:$1" 10.99.2.2 claude.ai)
  sleep 0.3
  b=$("$LOAD" tls "$C" "$STOP_CLIENT:$1" 10.99.2.2 -)
  mark probe_before "$1" hello="$a" again="$b" grant="$("$LOAD" tls "$C" $GRANT_CLIENT 10.99.2.4 gemini.google.com)"
}
probe_after() {
  mark probe_after "$1" again="$("$LOAD" tls "$C" "$STOP_CLIENT:$1" 10.99.2.2 -)" \
    grant="$("$LOAD" tls "$C" $GRANT_CLIENT 10.99.2.4 gemini.google.com)" \
    control="$("$LOAD" tls "$C" $CONTROL_CLIENT 10.99.2.4 gemini.google.com)"
}
kill_daemon() { # $1: round
  probe_before $((40000 + $1))
  mark kill9 "$DPID"
  # A daemon that died by itself is restarted all the same (the log and the samples show it).
  kill -9 "$DPID" 2>/dev/null || mark died_before_kill "$DPID"; wait "$DPID" 2>/dev/null || true
  start_daemon
  sleep 1
  probe_after $((40000 + $1))
}

# --- the schedule (seconds from the load's start, scaled to the run) ---
at() { # wait until second $1 of the run
  local t=$(( LOAD_T0 + $1 * 1000 - $(now) ))
  [ "$t" -gt 0 ] && sleep "$(awk -v t="$t" 'BEGIN {print t / 1000}')"
  return 0
}
pct() { echo $(( D * $1 / 100 )); }
OUTAGE=$(( D / 10 > 180 ? 180 : (D / 10 < 65 ? 65 : D / 10) ))   # "degraded" needs 60 s of silence
DISKFULL=$(( D * 6 / 100 < 10 ? 10 : D * 6 / 100 ))
FLOOD=$(( D / 10 < 12 ? 12 : (D / 10 > 60 ? 60 : D / 10) ))
RELOAD_EVERY=$(( D / 8 > 60 ? 60 : D / 8 ))

# The daemon's own decision-to-reset time, free of the generator's scheduling: the hellos to
# port 443 and the resets toward the clients as lan0 sees them (kernel timestamps), paired by
# 4-tuple in the checker. Needs dumpcap (tshark); without it the row says so.
if command -v dumpcap >/dev/null; then
  ip netns exec "$G" dumpcap -q -P -i lan0 -s 80 -B 64 -w "$WORK/resets.pcap" \
    -f 'tcp and ((dst port 443 and tcp[tcpflags] & tcp-push != 0) or (src port 443 and tcp[tcpflags] & tcp-rst != 0))' \
    > "$WORK/dumpcap.log" 2>&1 &
  DCPID=$!
  PIDS+=($DCPID)
fi

LOAD_T0=$(now)
mark load_start
"$LOAD" load "$C" "$D" "$RATE" "$QRATE" "$WORK/load.log" $GW > "$WORK/load.out" 2>&1 &
LPID=$!
PIDS+=($LPID)

# The grant, before any restart: the coach form for the grant client.
sleep 2
mark coach "$("$LOAD" coach "$C" $GRANT_CLIENT $GW gemini.google.com)"

# Policy reloads (SIGHUP) every RELOAD_EVERY s; the second one with a broken policy.
(
  n=0
  while sleep "$RELOAD_EVERY"; do
    n=$((n + 1))
    [ "$(( $(now) - LOAD_T0 ))" -lt $(( (D - 5) * 1000 )) ] || break
    if [ $n = 2 ]; then
      cp "$WORK/policies/policy.toml" "$WORK/policy.good"
      printf '[[rule]]\nid = "S-999-broken"\naction = "explode"\n' >> "$WORK/policies/policy.toml"
      mark reload_broken
      pkill -HUP -f " run --config $WORK/shadowgate.toml" || true
      sleep 2
      mv "$WORK/policy.good" "$WORK/policies/policy.toml"
    else
      write_policy "soak policy $n"
      mark reload_good
      pkill -HUP -f " run --config $WORK/shadowgate.toml" || true
    fi
  done
) &
PIDS+=($!)

at $(pct 12); kill_daemon 1
at $(pct 20); mark dns_down; kill "$DNSPID" || true; wait "$DNSPID" 2>/dev/null || true
# The upstream comes back OUTAGE s later, whichever fault comes before that (in a 2-minute run
# after the flood, in a 30-minute one before the RELP receiver's restart).
DNS_UP_AT=$(( $(pct 20) + OUTAGE ))
dns_up_by() { # bring the upstream back if it is due before second $1
  if [ -z "${DNS_UP_DONE:-}" ] && [ "$DNS_UP_AT" -le "$1" ]; then
    at "$DNS_UP_AT"; start_dns; mark dns_up; DNS_UP_DONE=1
  fi
  return 0
}
at $(pct 25); mark relp_kill; kill -9 "$RSPID" || true; wait "$RSPID" 2>/dev/null || true
dns_up_by "$(pct 35)"
at $(pct 35); mark relp_start; start_rsyslog
dns_up_by "$(pct 40)"
at $(pct 40); mark disk_full
dd if=/dev/zero of="$STORE/fill" bs=1M 2>/dev/null || true
dns_up_by "$(( $(pct 40) + DISKFULL ))"
at $(( $(pct 40) + DISKFULL )); rm -f "$STORE/fill"; mark disk_freed
dns_up_by "$(pct 50)"
at $(pct 50); mark iface_down; ip -n "$G" link set lan0 down; sleep 3; ip -n "$G" link set lan0 up; mark iface_up
dns_up_by "$(pct 55)"
at $(pct 55); mark flood_start
"$LOAD" flood "$C" "$FLOOD" $GW > "$WORK/flood.out" 2>&1 || true
mark flood_end
dns_up_by "$D"
at $(pct 85); kill_daemon 2
at $(pct 94); kill_daemon 3
wait "$LPID" || true
mark load_end
[ -n "${DCPID:-}" ] && { kill -INT "$DCPID" 2>/dev/null; wait "$DCPID" 2>/dev/null || true; }
cat "$WORK/load.out"

# --- drain: every stored event delivered to both sinks, then SIGTERM ---
sleep 6   # QUIC hellos still waiting for their server's answer are decided
for _ in $(seq 120); do
  behind=$(ip netns exec "$G" curl -s --max-time 2 "http://$METRICS/metrics" |
    awk '$1 ~ /^shadowgate_sink_queue_depth/ {s += $2; n++} END {print n ? s : "unknown"}')
  [ "$behind" = 0 ] && break
  sleep 1
done
mark drained "$behind"
kill -TERM "$DPID"; wait "$DPID" 2>/dev/null || true
DPID=
# What the daemon recorded as it stopped (sensor_stop, the last decisions) goes out as the next
# start would send it.
ip netns exec "$G" "$SG" deliver --timeout 30 --config "$WORK/shadowgate.toml" >> "$WORK/daemon.log" 2>&1 || mark deliver_failed

# --- the weekly report over the soak's store ---
WEEK=$(date -u +%G-W%V)
echo "$WEEK" > "$WORK/week"
set +e
"$SG" report --store "$STORE/events.db" --policy "$WORK/policies" --week "$WEEK" --timezone UTC \
  --out "$WORK/report" > "$WORK/report.out" 2>&1
echo $? > "$WORK/report.rc"
set -e

echo "$TCP_IDLE $UDP_IDLE $TTL $GRACE $FLOW_S $WARM" > "$WORK/lifetimes"
python3 bench/soak_check.py "$WORK" "$D" "$RATE" "$QRATE" "$OUTAGE" | tee "$OUT/table.txt"
rc=${PIPESTATUS[0]}
exit "$rc"
