#!/usr/bin/env bash
# shadowgate demo: a clinic in a box on this one machine (docs/src/demo.md).
#
# Three network namespaces joined by veth pairs, addresses only inside them:
#   client (10.66.1.2) -- lan0 [gateway: shadowgate, 10.66.1.1 | 10.66.2.1] wan0 -- internet
# The internet namespace holds a DNS server, a fake consumer AI site (chatgpt.com, 10.66.2.10) and
# the clinic's approved AI site (ai.clinic.example, 10.66.2.20). The gateway runs `shadowgate run`
# in enforce mode with DNS mode and the steering portal. Headless Chromium in the client namespace
# opens https://chatgpt.com/ and lands on the portal's page pointing to the approved route; a
# screenshot, the decision and the event are shown.
#
# Usage (as root): deploy/demo.sh          run, show, clean everything up
#                  deploy/demo.sh --keep   leave it running to explore (instructions printed)
#                  deploy/demo.sh --stop   tear down a demo left running by --keep
# Environment: SHADOWGATE_BIN (the binary; default target/release, target/ci, /usr/bin),
#              SHADOWGATE_DEMO_DIR (output folder; default /tmp/shadowgate-demo),
#              SHADOWGATE_DEMO_TAG (namespace name prefix; default sgdemo).
# Needs: ip (iproute2), chromium, certutil (libnss3-tools), openssl, python3, curl.
set -euo pipefail

MODE=run
case "${1:-}" in
  "") ;;
  --keep) MODE=keep ;;
  --stop) MODE=stop ;;
  -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo.sh: unknown argument $1 (try --keep, --stop or --help)" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${SHADOWGATE_DEMO_DIR:-/tmp/shadowgate-demo}
TAG=${SHADOWGATE_DEMO_TAG:-sgdemo}
NS_C=$TAG-client NS_G=$TAG-gateway NS_I=$TAG-internet
CLIENT=10.66.1.2 GW_LAN=10.66.1.1 GW_WAN=10.66.2.1
AI_SITE=10.66.2.10 APPROVED=10.66.2.20 DNS=10.66.2.53
METRICS=127.0.0.1:9811

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo.sh: $*" >&2; exit 1; }

teardown() {
  for f in "$OUT/daemon.pid" "$OUT/internet.pid"; do
    if [[ -f $f ]]; then
      kill "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  for ns in "$NS_C" "$NS_G" "$NS_I"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "/etc/netns/$NS_C"
}

if [[ $MODE == stop ]]; then
  teardown
  echo "demo stopped: namespaces $NS_C, $NS_G, $NS_I removed (results kept in $OUT)"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "run me as root (namespaces, capture and nftables need it): sudo $0 $*"
for t in ip chromium certutil openssl python3 curl; do
  command -v "$t" >/dev/null || die "$t is not installed (apt-get install iproute2 chromium libnss3-tools openssl python3 curl)"
done

BIN=${SHADOWGATE_BIN:-}
if [[ -z $BIN ]]; then
  for b in "$REPO/target/release/shadowgate" "$REPO/target/ci/shadowgate" /usr/bin/shadowgate; do
    if [[ -x $b ]]; then BIN=$b; break; fi
  done
fi
if [[ -z $BIN ]]; then
  command -v cargo >/dev/null || die "no shadowgate binary: build it (cargo build --release) or set SHADOWGATE_BIN"
  say "Building shadowgate (cargo build --release)"
  (cd "$REPO" && cargo build --release --bin shadowgate)
  BIN=$REPO/target/release/shadowgate
fi
POLICIES=$REPO/policies
[[ -d $POLICIES/catalog ]] || POLICIES=/etc/shadowgate/policies
[[ -d $POLICIES/catalog ]] || die "no policy catalogue found (looked in $REPO/policies and /etc/shadowgate/policies)"

# A demo left running by --keep (or a crashed one) is replaced.
teardown
# Everything goes on failure; --keep disarms this once the demo runs.
trap teardown EXIT
if [[ -d $OUT && ! -e $OUT/.shadowgate-demo && -n $(ls -A "$OUT") ]]; then
  die "$OUT exists and is no demo folder: set SHADOWGATE_DEMO_DIR to an empty or new folder"
fi
rm -rf "$OUT"
mkdir -p "$OUT"
chmod 700 "$OUT"
touch "$OUT/.shadowgate-demo"

say "1. The network: client -> gateway -> internet (namespaces $NS_C, $NS_G, $NS_I)"
for ns in "$NS_C" "$NS_G" "$NS_I"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$NS_G" link add lan0 type veth peer name eth0 netns "$NS_C"
ip -n "$NS_G" link add wan0 type veth peer name eth0 netns "$NS_I"
ip -n "$NS_C" addr add $CLIENT/24 dev eth0
ip -n "$NS_G" addr add $GW_LAN/24 dev lan0
ip -n "$NS_G" addr add $GW_WAN/24 dev wan0
for a in 10.66.2.2 $AI_SITE $APPROVED $DNS; do ip -n "$NS_I" addr add $a/24 dev eth0; done
for ns_dev in "$NS_C eth0" "$NS_G lan0" "$NS_G wan0" "$NS_I eth0"; do
  read -r ns dev <<<"$ns_dev"
  ip -n "$ns" link set "$dev" up
done
ip -n "$NS_C" route add default via $GW_LAN
ip -n "$NS_I" route add 10.66.1.0/24 via $GW_WAN
ip netns exec "$NS_G" sysctl -qw net.ipv4.ip_forward=1
# The client asks the gateway's DNS (DHCP option 6 on a real network).
mkdir -p "/etc/netns/$NS_C"
echo "nameserver $GW_LAN" >"/etc/netns/$NS_C/resolv.conf"
echo "client $CLIENT (DNS: $GW_LAN) -> gateway $GW_LAN | $GW_WAN -> internet: DNS $DNS, chatgpt.com $AI_SITE, ai.clinic.example $APPROVED"

say "2. The internet: a DNS server, a fake consumer AI site and the clinic's approved site"
# Certificates of the internet's sites, from a CA of the demo (trusted by the client's browser
# like a public CA would be).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=shadowgate demo internet CA" -keyout "$OUT/internet-ca.key" -out "$OUT/internet-ca.pem" 2>/dev/null
for name in chatgpt.com ai.clinic.example; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$OUT/$name.key" -out "$OUT/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$name" >"$OUT/$name.ext"
  openssl x509 -req -in "$OUT/$name.csr" -CA "$OUT/internet-ca.pem" -CAkey "$OUT/internet-ca.key" \
    -CAcreateserial -days 2 -extfile "$OUT/$name.ext" -out "$OUT/$name.pem" 2>/dev/null
done
cat >"$OUT/internet.py" <<'PY'
# The demo's internet: DNS for the zone below, and one HTTPS site per address.
import http.server, socket, ssl, struct, sys, threading, time
out, dns, sites = sys.argv[1], sys.argv[2], sys.argv[3:]
zone = {}
pages = {
    "chatgpt.com": ("ChatGPT (fake consumer AI site)", "#10a37f",
                    "If you can read this, the gateway let a consumer AI service through."),
    "ai.clinic.example": ("Clinic AI assistant (approved)", "#1f4e99",
                          "The clinic's approved, BAA-covered AI route: you are in the right place."),
}
for s in sites:
    name, ip = s.split("=")
    zone[name] = ip

def serve(name, ip):
    title, color, text = pages[name]
    body = (f"<!doctype html><html><head><title>{title}</title></head>"
            f"<body style='font-family:sans-serif;background:{color};color:white;padding:3em'>"
            f"<h1>{title}</h1><p>{text}</p><p>Served by {ip} on the demo's internet.</p>"
            "</body></html>").encode()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{out}/{name}.pem", f"{out}/{name}.key")
    class S(http.server.ThreadingHTTPServer):
        daemon_threads = True
        def finish_request(self, request, client_address):
            time.sleep(0.05)  # the real internet is tens of milliseconds away
            try:
                tls = ctx.wrap_socket(request, server_side=True)
            except OSError:
                return  # e.g. the gateway reset the connection
            self.RequestHandlerClass(tls, client_address, self)
        def handle_error(self, request, client_address):
            pass
    S((ip, 443), H).serve_forever()

def dns_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((dns, 53))
    while True:
        q, peer = s.recvfrom(1500)
        if len(q) < 12:
            continue
        i, labels = 12, []
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace").lower())
            i += 1 + q[i]
        if i + 5 > len(q):
            continue
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels)
        ip = zone.get(name)
        flags = 0x8180 if ip else 0x8183  # NOERROR or NXDOMAIN, recursion available
        answers = b""
        if ip and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        head = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        s.sendto(head + question + answers, peer)

for name, ip in zone.items():
    threading.Thread(target=serve, args=(name, ip), daemon=True).start()
dns_server()
PY
ip netns exec "$NS_I" python3 "$OUT/internet.py" "$OUT" $DNS chatgpt.com=$AI_SITE ai.clinic.example=$APPROVED \
  >"$OUT/internet.log" 2>&1 &
echo $! >"$OUT/internet.pid"
echo "DNS at $DNS; https://chatgpt.com/ at $AI_SITE; https://ai.clinic.example/ at $APPROVED"

say "3. The policy: consumer AI is steered to the approved route"
mkdir -p "$OUT/policy"
cp -r "$POLICIES/catalog" "$OUT/policy/catalog"
cat >"$OUT/policy/policy.toml" <<'TOML'
[settings]
default_action = "alert"

[approved_route]
url = "https://ai.clinic.example/"
instruction = "Use the clinic's AI assistant (covered by our BAA): sign in with your clinic account."

[[rule]]
id = "DEMO-100-approved-route"
categories = ["approved_route"]
action = "allow"
severity = "info"

[[rule]]
id = "DEMO-200-consumer-ai"
categories = ["consumer_ai"]
action = "steer"
severity = "medium"
TOML
"$BIN" policy check "$OUT/policy" >/dev/null
"$BIN" policy explain chatgpt.com --client $CLIENT --dir "$OUT/policy" 2>/dev/null | sed 's/^/  /' || true

say "4. The portal CA (only for the steered names) and the client's browser trusting it"
"$BIN" portal ca --days 2 --clinic "Elm Street Clinic (demo)" --policy "$OUT/policy" --out "$OUT/ca" >/dev/null
HOME_C=$OUT/client-home
mkdir -p "$HOME_C/.pki/nssdb"
certutil -d "sql:$HOME_C/.pki/nssdb" -N --empty-password
certutil -d "sql:$HOME_C/.pki/nssdb" -A -t C,, -n "shadowgate demo portal" -i "$OUT/ca/portal-ca.pem"
certutil -d "sql:$HOME_C/.pki/nssdb" -A -t C,, -n "demo internet CA" -i "$OUT/internet-ca.pem"
echo "portal CA $OUT/ca/portal-ca.pem trusted in $HOME_C/.pki/nssdb (with the demo internet's CA)"

say "5. shadowgate on the gateway: enforce mode, DNS mode, portal"
cat >"$OUT/shadowgate.toml" <<TOML
[sensor]
id = "demo-gateway"

[policy]
dir = "$OUT/policy"

[store]
path = "$OUT/events.db"
batch = 1

[capture]
interfaces = ["lan0"]

[metrics]
listen = "$METRICS"

[enforce]
mode = "enforce"
lan = ["10.66.1.0/24"]
break_glass_file = "$OUT/break-glass"

[dns]
listen = ["$GW_LAN:53"]
upstreams = ["$DNS:53"]
clients = ["10.66.1.0/24"]

[portal]
address = "$GW_LAN"
http = "$GW_LAN:80"
https = "$GW_LAN:443"
ca_cert = "$OUT/ca/portal-ca.pem"
ca_key = "$OUT/ca/portal-ca.key"
clinic_name = "Elm Street Clinic (demo)"
contact = "the privacy officer (privacy@elm.example, ext. 210)"
TOML
ip netns exec "$NS_G" "$BIN" run --config "$OUT/shadowgate.toml" >"$OUT/daemon.log" 2>&1 &
echo $! >"$OUT/daemon.pid"
for _ in $(seq 150); do
  if ip netns exec "$NS_G" curl -sf "http://$METRICS/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$(cat "$OUT/daemon.pid")" 2>/dev/null || { cat "$OUT/daemon.log" >&2; die "the daemon exited (its log is above)"; }
  sleep 0.1
done
ip netns exec "$NS_G" curl -sf "http://$METRICS/healthz" >/dev/null \
  || { cat "$OUT/daemon.log" >&2; die "the daemon is not healthy after 15 s (its log is above)"; }
echo "running: $BIN run --config $OUT/shadowgate.toml (pid $(cat "$OUT/daemon.pid"), log $OUT/daemon.log)"
echo "health: $(ip netns exec "$NS_G" curl -s "http://$METRICS/healthz")"

say "6. The client's browser opens https://chatgpt.com/"
browse() { # URL SCREENSHOT
  ip netns exec "$NS_C" env HOME="$HOME_C" timeout 60 chromium --headless --no-sandbox --disable-gpu \
    --user-data-dir="$OUT/client-profile" --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-quic \
    --disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable \
    --window-size=1280,900 --screenshot="$2" "$1" >>"$OUT/chromium.log" 2>&1
}
echo "DNS: the client asks the gateway for chatgpt.com ->" \
  "$(ip netns exec "$NS_C" python3 -c 'import socket; print(socket.gethostbyname("chatgpt.com"))')" \
  "(the portal's address, not $AI_SITE)"
browse https://chatgpt.com/ "$OUT/steer.png"
[[ -s $OUT/steer.png ]] || die "chromium made no screenshot ($OUT/chromium.log)"
TITLE=$(ip netns exec "$NS_C" curl -s -H 'Accept: text/html' --cacert "$OUT/ca/portal-ca.pem" https://chatgpt.com/ | sed -n 's:.*<title>\(.*\)</title>.*:\1:p' | head -1)
echo "the page the browser got: \"$TITLE\" (from the portal on $GW_LAN, certificate by the portal CA)"
echo "screenshot: $OUT/steer.png"
# A direct connection to the real address is stopped on the wire (no DNS involved).
if ip netns exec "$NS_C" curl -s -m 5 --cacert "$OUT/internet-ca.pem" --resolve chatgpt.com:443:$AI_SITE \
  https://chatgpt.com/ >/dev/null 2>&1; then
  DIRECT="reached the site (not stopped!)"
else
  DIRECT="stopped by the gateway (TCP reset)"
fi
echo "a connection straight to chatgpt.com's real address $AI_SITE: $DIRECT"
browse https://ai.clinic.example/ "$OUT/approved.png"
echo "the approved route https://ai.clinic.example/ opens normally: $OUT/approved.png"

say "7. What the daemon decided and recorded"
for _ in $(seq 50); do
  "$BIN" events --config "$OUT/shadowgate.toml" --service chatgpt --format json >"$OUT/events.json" 2>/dev/null || true
  grep -q '"steer"' "$OUT/events.json" && break
  sleep 0.2
done
"$BIN" events --config "$OUT/shadowgate.toml" --format json >"$OUT/all-events.json"
"$BIN" events --config "$OUT/shadowgate.toml" --service chatgpt | sed 's/^/  /'
grep -q '"steer"' "$OUT/events.json" || die "no steer event for chatgpt in the store ($OUT/daemon.log)"
echo
echo "the first chatgpt event as JSON (shadowgate events --service chatgpt --format json):"
head -1 "$OUT/events.json" | python3 -m json.tool | sed 's/^/  /'

say "Summary"
cat <<EOF
  The client ($CLIENT) asked its DNS (the gateway) for chatgpt.com. shadowgate's policy rule
  DEMO-200-consumer-ai says "steer": DNS answered with the portal's address $GW_LAN, the browser
  got the clinic's page pointing to the approved route https://ai.clinic.example/ (screenshot
  $OUT/steer.png), and a connection to the real address was $DIRECT.
  Every decision is an event in the store: $OUT/events.json (chatgpt), $OUT/all-events.json (all).
  Metrics: ip netns exec $NS_G curl -s http://$METRICS/metrics
EOF

if [[ $MODE == keep ]]; then
  trap - EXIT
  say "Left running (--keep)"
  cat <<EOF
  Explore (as root):
    ip netns exec $NS_C curl -sk https://chatgpt.com/ | head        # the portal's page
    ip netns exec $NS_C curl -s --cacert $OUT/internet-ca.pem https://ai.clinic.example/
    $BIN events --config $OUT/shadowgate.toml                       # the audit trail
    $BIN break-glass on --config $OUT/shadowgate.toml               # enforcement off
    ip netns exec $NS_G curl -s http://$METRICS/healthz
    ip netns exec $NS_C bash                                         # a shell on the client
  Stop it: $0 --stop
EOF
else
  say "Cleaning up (namespaces, daemon, servers); results kept in $OUT"
fi
