#!/usr/bin/env bash
# Regenerate the adversarial captures, expected.json and the tshark truth files in this folder.
# Deterministic: fixed seeds and timestamps, so a rerun gives byte-identical files.
#   pcaps/adversarial/make.sh            # needs cargo; tshark (Debian: apt-get install tshark)
#                                          # for the truth files (skipped with a warning without it)
# Captures that crash or exhaust the current sensor are kept as NAME.held (see README.md: the
# test that replays every *.pcap/*.pcapng under pcaps/ would fail on them). HELD= (empty) writes
# every capture under its plain name.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")"
HERE=$PWD
HELD=${HELD-deep-nesting.pcap deep-tunnels.pcap dns-bomb.pcap far-future.pcapng}
rm -f ./*.pcap ./*.pcapng ./*.held ./*.truth.json
(cd ../.. && cargo run -q --example gen_adversarial -- "$HERE")
for f in $HELD; do mv "$f" "$f.held"; done
if command -v tshark >/dev/null; then
  python3 truth.py ./*.pcap ./*.pcapng ./*.held >/dev/null
else
  echo "make.sh: tshark not found: truth files not written" >&2
fi
sha256sum ./*.pcap ./*.pcapng ./*.held expected.json | sed 's|\./||'
