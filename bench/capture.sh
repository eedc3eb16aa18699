#!/usr/bin/env bash
# Live capture rate: the bench mix replayed with tcpreplay over a veth into a gateway namespace,
# at rising rates, into each reader in turn; the highest rate each one takes with no loss.
#
#   bench/capture.sh [--smoke]
#
# Namespaces `sgcap-s-PID` (sender, veth `cbs0`) and `sgcap-g-PID` (gateway, veth `cbg0`) are
# made here and deleted on exit; no addresses are needed (frames are addressed to other MACs, so
# the gateway's stack ignores them and only packet sockets see them). Readers (READERS):
#   tcpdump  `tcpdump -w /dev/null -B 65536` (libpcap's TPACKET_V3 ring, 64 MiB): the baseline
#   ring1    `shadowgate run`, [capture] threads = 1 (monitor mode, bundled policy)
#   ring2    `shadowgate run`, [capture] threads = 2 (PACKET_FANOUT hash + defrag)
#   pnet1    examples/pnet_capture.rs, one pnet datalink channel, 64 MiB socket buffer
#   pnet2    the same with two channels in a fanout group
# Rates (RATES, total Mbit/s for tcpreplay --mbps; "top" is --topspeed): default
# "250 500 1000 1500 2000 3000 top". SENDERS tcpreplay processes (default 2; one core's worth of
# tcpreplay cannot fill a gigabit here) send at once, each its own file of the mix (different
# flows, PACKETS/SENDERS frames, CONC/SENDERS concurrent flows) at RATE/SENDERS, until their
# file ends or DURATION seconds (4) pass. Loss = frames sent - frames the reader counted;
# "kdrop" is the kernel's count for the reader's socket(s) (PACKET_STATISTICS; for shadowgate
# read from /metrics), "kpkts" the frames the kernel offered the reader (drops included),
# "vdrop" frames the veth itself dropped before any reader (the per-CPU
# backlog is full: the testbed's limit, not the reader's). A rate passes when loss = 0 and
# kdrop = 0; a reader's best is the highest achieved rate among its passing trials. "cpu" is
# the reader's CPU time in the trial (user + system, all threads, from /proc/PID/stat) and
# "ns/fr" that per frame counted: 1e9/ns_per_frame is what one core of the reader would take,
# a figure the sender's limits do not cap. The `uptime` load is printed with every trial.
# --smoke: ring1 at 100 Mbit/s for 20,000 frames; exits non-zero unless there is no loss.
# Needs root, iproute2, ethtool, tcpreplay, tcpdump, curl. Results: bench-out/capture/results.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
OUT=bench-out/capture
mkdir -p "$OUT"
SMOKE=
[ "${1:-}" = "--smoke" ] && SMOKE=1
READERS=${READERS:-tcpdump ring1 ring2 pnet1 pnet2}
RATES=${RATES:-250 500 1000 1500 2000 3000 top}
PACKETS=${PACKETS:-500000}
DURATION=${DURATION:-4}
CONC=${CONC:-2000}
SENDERS=${SENDERS:-2}
if [ -n "$SMOKE" ]; then READERS=ring1; RATES=100; PACKETS=20000; SENDERS=1; fi
for tool in ip ethtool tcpreplay tcpdump curl; do
  command -v $tool >/dev/null || { echo "capture.sh: needs $tool (apt-get install iproute2 ethtool tcpreplay tcpdump curl)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "capture.sh: needs root (namespaces, packet sockets)" >&2; exit 1; }

if [ -z "${NOBUILD:-}" ]; then
  cargo build --release --quiet --bin shadowgate --example gen_live --example pnet_capture
fi
MIXES=()
for k in $(seq 0 $((SENDERS - 1))); do
  m=$OUT/mix-$PACKETS-$CONC-$k-of-$SENDERS.pcap
  [ -s "$m" ] || "$T/release/examples/gen_live" mix "$m" $((PACKETS / SENDERS)) $((CONC / SENDERS)) $((k * 1000000))
  MIXES+=("$m")
done

S=sgcap-s-$$
G=sgcap-g-$$
WORK=$(mktemp -d /tmp/sgcap.XXXXXX)
READER_PID=
cleanup() {
  [ -n "$READER_PID" ] && kill "$READER_PID" 2>/dev/null && wait "$READER_PID" 2>/dev/null
  ip netns del "$S" 2>/dev/null || true
  ip netns del "$G" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$S"
ip netns add "$G"
ip -n "$S" link add cbs0 type veth peer name cbg0 netns "$G"
for ns in "$S" "$G"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$S" link set cbs0 up
ip -n "$G" link set cbg0 up
ip netns exec "$S" ethtool -K cbs0 tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec "$G" ethtool -K cbg0 tso off gso off gro off >/dev/null 2>&1 || true

METRICS=127.0.0.1:9819
mkdir -p "$WORK/store"
cat > "$WORK/shadowgate.toml" <<EOF
[sensor]
id = "capbench"

[policy]
dir = "$PWD/policies"

[store]
path = "$WORK/store/events.db"

[capture]
interfaces = ["cbg0"]
threads = THREADS
stats_interval_s = 1

[enforce]
mode = "monitor"
break_glass_file = "$WORK/glass"

[metrics]
listen = "$METRICS"
EOF

metric() { # metric NAME: the sum of its samples on /metrics in the gateway namespace
  ip netns exec "$G" curl -s --max-time 3 "http://$METRICS/metrics" |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d\n", s}'
}
vdrops() { # frames the veth pair dropped (sender TX dropped + gateway RX dropped)
  local a b
  a=$(ip netns exec "$S" cat /sys/class/net/cbs0/statistics/tx_dropped)
  b=$(ip netns exec "$G" cat /sys/class/net/cbg0/statistics/rx_dropped)
  echo $((a + b))
}

start_reader() { # start_reader NAME: starts it in the gateway namespace and waits until ready
  local r=$1 t
  : > "$WORK/reader.out"; : > "$WORK/reader.err"
  case $r in
    tcpdump)
      ip netns exec "$G" tcpdump -i cbg0 -n -q -B 65536 -w /dev/null >"$WORK/reader.out" 2>"$WORK/reader.err" &
      READER_PID=$!
      for _ in $(seq 100); do grep -q listening "$WORK/reader.err" && break; sleep 0.1; done ;;
    ring*)
      t=${r#ring}
      sed "s/^threads = THREADS/threads = $t/" "$WORK/shadowgate.toml" > "$WORK/run.toml"
      rm -rf "$WORK/store"; mkdir -p "$WORK/store"
      ip netns exec "$G" "$T/release/shadowgate" run --config "$WORK/run.toml" >"$WORK/reader.out" 2>"$WORK/reader.err" &
      READER_PID=$!
      for _ in $(seq 150); do
        ip netns exec "$G" curl -sf --max-time 1 "http://$METRICS/healthz" >/dev/null 2>&1 && break
        sleep 0.1
      done ;;
    pnet*)
      t=${r#pnet}
      ip netns exec "$G" "$T/release/examples/pnet_capture" cbg0 "$t" 64 >"$WORK/reader.out" 2>"$WORK/reader.err" &
      READER_PID=$!
      for _ in $(seq 100); do grep -q counting "$WORK/reader.err" && break; sleep 0.1; done ;;
  esac
  kill -0 "$READER_PID" 2>/dev/null || { echo "capture.sh: reader $r did not start:" >&2; cat "$WORK/reader.err" >&2; exit 1; }
  sleep 0.5
  CPU0=$(cpu_ticks "$READER_PID")
}
cpu_ticks() { # user + system clock ticks of a process (all its threads)
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# stop_reader NAME: stops it and sets COUNTED and KDROP for the trial
stop_reader() {
  local r=$1 c d k
  case $r in
    ring*)
      sleep 1.6 # the frame counter moves every 0.5 s, kernel counters every second
      CPU1=$(cpu_ticks "$READER_PID")
      c=$(metric shadowgate_frames_total); d=$(metric shadowgate_kernel_drops_total)
      k=$(metric shadowgate_kernel_packets_total)
      kill -TERM "$READER_PID"; wait "$READER_PID" 2>/dev/null || true ;;
    tcpdump)
      sleep 1.6 # as long as the daemon gets: the ring may drain after the sender stops
      CPU1=$(cpu_ticks "$READER_PID")
      kill -INT "$READER_PID"; wait "$READER_PID" 2>/dev/null || true
      c=$(awk '/packets captured/ {print $1}' "$WORK/reader.err")
      d=$(awk '/dropped by kernel/ {print $1}' "$WORK/reader.err")
      k=$(awk '/received by filter/ {print $1}' "$WORK/reader.err") ;;
    pnet*)
      sleep 1.6
      CPU1=$(cpu_ticks "$READER_PID")
      kill -TERM "$READER_PID"; wait "$READER_PID" 2>/dev/null || true
      c=$(awk '{print $2}' "$WORK/reader.out"); d=$(awk '{print $8}' "$WORK/reader.out")
      k=$(awk '{print $6}' "$WORK/reader.out") ;;
  esac
  READER_PID=
  COUNTED=${c:-0}; KDROP=${d:-0}; KPKTS=${k:-0}
}

RES=$OUT/results.tsv
[ -n "$SMOKE" ] && RES=$WORK/smoke.tsv
: > "$RES.best"
printf "reader\trate\tsent\tcounted\tloss\tkpkts\tkdrop\tvdrop\tgbps\tmpps\tcpu_s\tns/fr\tresult\tload1\n" > "$RES"
echo "mix: ${MIXES[*]} ($SENDERS sender(s)), $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)" | tee "$RES.head" >&2
HZ=$(getconf CLK_TCK)
FAILED=
for r in $READERS; do
  best=none; bestg=0; firstloss=
  for rate in $RATES; do
    start_reader "$r"
    v0=$(vdrops)
    if [ "$rate" = top ]; then opt=--topspeed; else opt=--mbps=$(awk -v r="$rate" -v n="$SENDERS" 'BEGIN {print r / n}'); fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    pids=()
    for k in $(seq 0 $((SENDERS - 1))); do
      ip netns exec "$S" tcpreplay -i cbs0 -K $opt --limit=$((PACKETS / SENDERS)) --duration="$DURATION" "${MIXES[$k]}" >"$WORK/replay.$k" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do
      wait "$p" || { cat "$WORK"/replay.* >&2; exit 1; }
    done
    stop_reader "$r"
    counted=$COUNTED; kdrop=$KDROP
    [ -z "$SMOKE" ] && cat "$WORK"/replay.* > "$OUT/replay-$r-$rate.txt"
    vd=$(( $(vdrops) - v0 ))
    # Per sender "Successful packets: N" and "Actual: N packets (B bytes) sent in S seconds":
    # the achieved rate is all bytes over the longest sender's time.
    read -r sent gbps mpps < <(cat "$WORK"/replay.* | awk '
      /Successful packets:/ {sent += $3}
      /Actual:/ {p += $2; b = $4; gsub(/\(/, "", b); bytes += b; if ($(NF-1) > s) s = $(NF-1)}
      END {if (s > 0) printf "%d %.3f %.4f\n", sent, bytes*8/s/1e9, p/s/1e6; else printf "%d 0 0\n", sent}')
    cpu=$(awk -v a="$CPU0" -v b="$CPU1" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}')
    nsfr=$(awk -v c="$cpu" -v n="$counted" 'BEGIN {if (n > 0) printf "%.0f", c * 1e9 / n; else print "-"}')
    loss=$(( sent - counted ))
    res=ok
    if [ "$loss" != 0 ] || [ "$kdrop" != 0 ]; then res=LOSS; fi
    if [ "$res" = ok ]; then
      if awk -v a="$gbps" -v b="$bestg" 'BEGIN {exit !(a > b)}'; then bestg=$gbps; best="$gbps Gbit/s, $mpps Mpps (rate $rate)"; fi
    else
      [ -z "$firstloss" ] && firstloss="$gbps Gbit/s (rate $rate: loss $loss, kernel drops $kdrop)"
      FAILED=1
    fi
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$rate" "$sent" "$counted" "$loss" "$KPKTS" "$kdrop" "$vd" "$gbps" "$mpps" "$cpu" "$nsfr" "$res" "$load" | tee -a "$RES" >&2
  done
  echo "$r: best $best; first loss: ${firstloss:-none}" | tee -a "$RES.best" >&2
done
cat "$RES.head"
column -t -s $'\t' "$RES"
echo "highest achieved rate with no loss and no kernel drops:"
cat "$RES.best"
if [ -n "$SMOKE" ] && [ -n "$FAILED" ]; then
  echo "capture.sh --smoke: frames were lost at 100 Mbit/s" >&2
  exit 1
fi
exit 0
