#!/usr/bin/env bash
# Regenerate the captures in this folder: real clients (Chromium, curl, dig) talking to local
# servers (dnsmasq, openssl s_server, python http.server) across a veth pair between two network
# namespaces made here. The addresses (10.203.0.0/24, fd00:203::/64) exist only inside them;
# nothing leaves the machine. Needs root and: chromium curl dnsutils dnsmasq-base openssl tcpdump
# ethtool tshark python3 and aioquic (pip). Then `python3 truth.py *.pcap` writes the truth files.
set -euo pipefail
cd "$(dirname "$0")"
C=sg-gen-c
S=sg-gen-s
TMP=$(mktemp -d)
cleanup() {
  for ns in $C $S; do
    ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $ns 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
cleanup; TMP=$(mktemp -d)

ip netns add $C
ip netns add $S
ip link add sg-c netns $C type veth peer name sg-s netns $S
ip -n $C addr add 10.203.0.1/24 dev sg-c
ip -n $S addr add 10.203.0.2/24 dev sg-s
ip -n $C addr add fd00:203::1/64 dev sg-c nodad
ip -n $S addr add fd00:203::2/64 dev sg-s nodad
for ns in $C $S; do ip -n $ns link set lo up; done
ip -n $C link set sg-c up
ip -n $S link set sg-s up
# Real segment sizes on the wire (no TSO/GSO super-frames in the capture).
ip netns exec $C ethtool -K sg-c tso off gso off gro off >/dev/null
ip netns exec $S ethtool -K sg-s tso off gso off gro off >/dev/null

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=shadowgate-test -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
S_EXEC="ip netns exec $S"
$S_EXEC dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=10.203.0.2 \
  --address=/claude.ai/10.203.0.2 --address=/chatgpt.com/10.203.0.2 --address=/gemini.google.com/10.203.0.2 \
  --address=/api.anthropic.com/fd00:203::2 --address=/copilot.microsoft.com/10.203.0.2 \
  --log-facility=/dev/null --pid-file="$TMP/dnsmasq.pid" &
$S_EXEC openssl s_server -quiet -www -accept 443 -cert "$TMP/cert.pem" -key "$TMP/key.pem" >/dev/null 2>&1 &
$S_EXEC openssl s_server -quiet -www -accept 10.203.0.2:8443 -cert "$TMP/cert.pem" -key "$TMP/key.pem" >/dev/null 2>&1 &
$S_EXEC openssl s_server -quiet -www -accept '[fd00:203::2]:8443' -cert "$TMP/cert.pem" -key "$TMP/key.pem" >/dev/null 2>&1 &
$S_EXEC python3 quic_peer.py server "$TMP/cert.pem" "$TMP/key.pem" 10.203.0.2 443 >/dev/null 2>&1 &
$S_EXEC python3 quic_peer.py server "$TMP/cert.pem" "$TMP/key.pem" 10.203.0.2 8443 >/dev/null 2>&1 &
$S_EXEC python3 -m http.server 80 --bind 10.203.0.2 >/dev/null 2>&1 &
sleep 1

# capture NAME CMD...: record the client side while CMD runs.
capture() {
  local name=$1; shift
  ip netns exec $C tcpdump -i sg-c -U -s 0 -w "$name.pcap" >/dev/null 2>&1 &
  local pid=$!
  sleep 1
  "$@" || true
  sleep 1
  kill -INT $pid; wait $pid || true
  echo "$name.pcap: $(tcpdump -r "$name.pcap" 2>/dev/null | wc -l) packets"
}

C_EXEC="ip netns exec $C"
chromium_visit() {
  local extra=$1 url=$2
  $C_EXEC timeout 20 chromium --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d -p "$TMP")" --ignore-certificate-errors \
    --host-resolver-rules="MAP * 10.203.0.2" $extra --dump-dom "$url" >/dev/null 2>&1
}

browser() {
  # TLS over TCP: Chromium's post-quantum ClientHello spans two segments at MTU 1500.
  chromium_visit "" https://claude.ai/
  # TLS on a non-standard port.
  chromium_visit "" https://chatgpt.com:8443/
}
capture chromium-ai browser

cli() {
  $C_EXEC dig +tries=1 +time=2 @10.203.0.2 claude.ai A >/dev/null
  $C_EXEC dig +tries=1 +time=2 +tcp @10.203.0.2 chatgpt.com A >/dev/null
  $C_EXEC dig +tries=1 +time=2 @10.203.0.2 api.anthropic.com AAAA >/dev/null
  # SNI over IPv4 and IPv6, HTTP Host, and a bare-IP TLS connection (no SNI: names inferred
  # from the DNS answer for claude.ai above).
  $C_EXEC curl -sk --max-time 5 --resolve copilot.microsoft.com:443:10.203.0.2 https://copilot.microsoft.com/ >/dev/null
  $C_EXEC curl -sk --max-time 5 --resolve api.anthropic.com:8443:[fd00:203::2] https://api.anthropic.com:8443/ >/dev/null
  $C_EXEC curl -s --max-time 5 --resolve chatgpt.com:80:10.203.0.2 http://chatgpt.com/ >/dev/null
  $C_EXEC curl -sk --max-time 5 https://10.203.0.2/ >/dev/null
}
capture curl-dig cli

quic() {
  # QUIC v1 and v2 handshakes with a real client library (aioquic) against a local server, one on
  # a non-standard port. (Chromium in this sandbox sends no QUIC even when forced; its
  # multi-Initial post-quantum hellos are covered by the public captures.)
  $C_EXEC python3 quic_peer.py client 10.203.0.2 443 gemini.google.com
  $C_EXEC python3 quic_peer.py client 10.203.0.2 443 chatgpt.com v2
  $C_EXEC python3 quic_peer.py client 10.203.0.2 8443 claude.ai
}
capture aioquic quic
