#!/usr/bin/env bash
# Fill fuzz/corpus/<target> with seeds taken from the captures under pcaps/ (including the
# adversarial *.held ones):
#   frame  every frame of each capture (at most 64 per file, all of pcaps/adversarial), prefixed
#          with the selector byte of its link type (fuzz_targets/frame.rs, one frame per input)
#   file   whole capture files (the first 512 KiB of larger ones: a truncated file is a case too)
#   dns    DNS messages (UDP payloads; DNS over TCP as reassembled by tshark)
#   tls    TLS ClientHello first flights (reassembled when split), HTTP request heads and SOCKS
#          greetings (the tls target parses all three)
#   quic   QUIC long-header client datagrams
#   name   names from the truth files and the policy catalogue
#   portal HTTP requests to the portal as the tests send them (views, sub-resources, the coach
#          form POST with an @TOKEN@ the target replaces by a valid token, bad Hosts, pipelining),
#          behind the target's selector byte (client, HTTP or HTTPS with an SNI)
#   dnsq   DNS queries (UDP payloads with QR clear) behind the target's selector byte (client,
#          guard socket, monitor mode, TCP), plus queries for bypass and steered names
# SKIP_HELD=1 leaves out the captures kept as *.held (they crash today's sensor at once);
# CORPUS=DIR writes elsewhere than fuzz/corpus (run.sh reads CORPUS too).
# Needs python3 and tshark (Debian: apt-get install tshark). Idempotent: seeds are named by hash.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tshark >/dev/null || { echo "seed.sh: needs tshark" >&2; exit 1; }
python3 - <<'PY'
import glob, hashlib, json, os, re, struct, subprocess

CORPUS = os.path.join("fuzz", os.environ.get("CORPUS", "corpus"))
SKIP_HELD = os.environ.get("SKIP_HELD") == "1"
LINKTYPES = [1, 0, 101, 113, 276, 239, 228, 229]  # index = selector & 7 (frame.rs)
counts = {}

def put(target, data):
    if not data:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, hashlib.sha1(data).hexdigest())
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
        counts[target] = counts.get(target, 0) + 1

def frames(data):
    """(linktype, frame bytes) of a pcap or pcapng file, until the first damage."""
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xa1b2c3d4, 0xa1b23c4d, 0xd4c3b2a1, 0x4d3cb2a1):
        e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
        lt = struct.unpack(e + "I", data[20:24])[0] & 0xffff
        pos = 24
        while pos + 16 <= len(data):
            incl = struct.unpack(e + "I", data[pos + 8:pos + 12])[0]
            if incl > 262144 or pos + 16 + incl > len(data):
                return
            yield lt, data[pos + 16:pos + 16 + incl]
            pos += 16 + incl
    elif magic == 0x0a0d0d0a:
        pos, e, ifaces = 0, "<", []
        while pos + 12 <= len(data):
            ty = struct.unpack(e + "I", data[pos:pos + 4])[0]
            if ty == 0x0a0d0d0a:
                e = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                ifaces = []
            ln = struct.unpack(e + "I", data[pos + 4:pos + 8])[0]
            if ln < 12 or pos + ln > len(data):
                return
            body = data[pos + 8:pos + ln - 4]
            if ty == 1:
                ifaces.append(struct.unpack(e + "H", body[:2])[0])
            elif ty == 6 and len(body) >= 20:
                iface, _, _, cap = struct.unpack(e + "IIII", body[:16])
                if iface < len(ifaces):
                    yield ifaces[iface], body[20:20 + cap]
            elif ty == 3 and ifaces:
                yield ifaces[0], body[4:]
            pos += ln

caps = sorted(p for p in glob.glob("pcaps/**/*", recursive=True)
              if re.search(r"\.(pcap|pcapng)(\.held)?$", p) and not (SKIP_HELD and p.endswith(".held")))
for path in caps:
    data = open(path, "rb").read()
    put("file", data[:512 * 1024])
    limit = None if "/adversarial/" in path else 64
    for i, (lt, f) in enumerate(frames(data)):
        if limit is not None and i >= limit:
            break
        if lt in LINKTYPES:
            put("frame", bytes([LINKTYPES.index(lt)]) + f)

def tshark(path, filt, *fields):
    cmd = ["tshark", "-n", "-r", path, "-o", "tcp.reassemble_out_of_order:TRUE", "-Y", filt, "-T", "fields", "-E", "separator=/t"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, timeout=300).stdout.decode("ascii", "ignore")
    for line in out.splitlines():
        for cell in line.split("\t"):
            for h in cell.split(","):
                h = h.replace(":", "")
                if h and len(h) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", h):
                    yield bytes.fromhex(h)

for path in caps:
    if path.endswith(("deep-nesting.pcap.held", "deep-tunnels.pcap.held")):
        continue  # tshark gives up on these; their frames are in the frame corpus already
    for b in tshark(path, "dns && udp", "udp.payload"):
        put("dns", b)
        if len(b) >= 12 and not b[2] & 0x80:
            for sel in (0, 16):
                put("dnsq", bytes([sel]) + b)
    for b in tshark(path, "dns && tcp", "tcp.reassembled.data", "tcp.payload"):
        put("dns", b[2:] if len(b) > 2 else b)
    for b in tshark(path, "tls.handshake.type == 1 && !quic", "tcp.reassembled.data", "tcp.payload"):
        put("tls", b)
    for b in tshark(path, "http.request || socks", "tcp.payload"):
        put("tls", b)
    for b in tshark(path, "quic.long.packet_type == 0", "udp.payload"):
        put("quic", b)

names = set()
for t in glob.glob("pcaps/**/*.truth.json", recursive=True):
    j = json.load(open(t))
    for k in ("sni", "quic_sni", "dns_queries", "http_hosts"):
        names.update(v for v in j.get(k, []) if isinstance(v, str))
for c in glob.glob("policies/catalog/*.toml"):
    names.update(re.findall(r'"([*a-z0-9][^"\s]*\.[^"\s]+)"', open(c).read()))
names.update(["ｃｌａｕｄｅ.ai", "bücher.example", "chatgpt．com", "xn--bcher-kva.example", "CLAUDE.AI.", "*.claude.ai"])
for n in sorted(names):
    put("name", n.encode("utf-8", "surrogateescape"))

def query(name, qtype=1, qid=0x1234, edns=False):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    if edns:
        q += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    return q

for n in ["use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com", "_dns.resolver.arpa",
          "chatgpt.com", "claude.ai", "sora.com", "www.example.org", "nx.example.org", "localhost"]:
    for qtype, edns in ((1, False), (28, True), (65, True)):
        for sel in (0, 2, 4, 8, 16):
            put("dnsq", bytes([sel]) + query(n, qtype, edns=edns))

def get(host, path="/", dest="document", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Dest: {dest}\r\n{extra}\r\n"

def post(host, body, origin=True, scheme="http"):
    o = f"Origin: {scheme}://{host}\r\nSec-Fetch-Site: same-origin\r\n" if origin else ""
    return (f"POST /.shadowgate/continue HTTP/1.1\r\nHost: {host}\r\n{o}"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}")

good = "token=@TOKEN@&ack=yes&justification=Drafting+a+poster"
reqs = [
    get("sora.com"), get("chatgpt.com"), get("www.example.org"), get("sora.com", "/favicon.ico", "image"),
    get("chatgpt.com", "/api?q=1&x=%zz", "empty"), get("ChatGPT.com:80", "/?a=b"), get("claude.ai."),
    get("sora.com", "/", "document", "Sec-Purpose: prefetch\r\n"),
    "GET / HTTP/1.1\r\nHost: sora.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: sora.com\r\nAccept: text/html\r\n\r\n",
    "GET http://sora.com/ HTTP/1.1\r\nHost: sora.com\r\nSec-Fetch-Dest: document\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "GET / HTTP/1.1\r\nHost: a<b\r\n\r\n",
    "DELETE / HTTP/1.1\r\nHost: sora.com\r\n\r\n",
    post("sora.com", good), post("sora.com", good, scheme="https"), post("sora.com", good, origin=False),
    post("sora.com", "token=@TOKEN@&ack=no&justification="), post("sora.com", "token=" + "ab" * 56 + "&ack=yes&justification=x"),
    post("chatgpt.com", good), post("sora.com", good) + post("sora.com", good),
    post("sora.com", "token=@TOKEN@&ack=yes&justification=" + "x" * 60),
    get("sora.com") + post("sora.com", good) + get("sora.com"),
    "POST /.shadowgate/continue HTTP/1.1\r\nHost: sora.com\r\nOrigin: http://sora.com\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ntoken\r\n0\r\n\r\n",
    "POST /.shadowgate/continue HTTP/1.1\r\nHost: sora.com\r\nOrigin: http://sora.com\r\nContent-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
]
for r in reqs:
    for sel in (0, 1, 4, 4 | 8):
        put("portal", bytes([sel]) + r.encode())

for t in ["frame", "file", "dns", "tls", "quic", "name", "portal", "dnsq"]:
    d = os.path.join(CORPUS, t)
    total = len(os.listdir(d)) if os.path.isdir(d) else 0
    print(f"{t:6} {total:6} inputs ({counts.get(t, 0)} new)")
PY
