#!/usr/bin/env bash
# Regenerate the adversarial captures, expected.json and the tshark truth files in this folder.
# Deterministic: fixed seeds and timestamps, so a rerun gives byte-identical files.
#   pcaps/adversarial/make.sh            # needs cargo; tshark (Debian: apt-get install tshark)
#                                          # for the truth files (skipped with a warning without it)
# While a capture crashed or exhausted the sensor it was kept as NAME.held (the test that replays
# every *.pcap/*.pcapng under pcaps/ would have failed on it); since issue 8 none does, so HELD
# is empty. HELD="name ..." holds some back again.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")"
HERE=$PWD
HELD=${HELD-}
rm -f ./*.pcap ./*.pcapng ./*.held ./*.truth.json
(cd ../.. && cargo run -q --example gen_adversarial -- "$HERE")
for f in $HELD; do mv "$f" "$f.held"; done
if command -v tshark >/dev/null; then
  python3 truth.py ./*.pcap ./*.pcapng ./*.held >/dev/null
else
  echo "make.sh: tshark not found: truth files not written" >&2
fi
sha256sum ./*.pcap ./*.pcapng ./*.held expected.json | sed 's|\./||'
