#!/usr/bin/env bash
# Reset latency (run by hand, as root): time from a ClientHello leaving the client to the TCP
# reset arriving back at the client, through a namespace gateway running the enforcer, p50/p99
# over N connections (default 1000; target p99 < 2 ms), beside the same path's round trip
# measured in the same run (the ratio is the figure to compare across machines). The client
# clock is the socket's: write of the hello to read() returning ECONNRESET (an upper bound).
# Also prints the nftables element rate (bulk) and the latency of one waited-for operation.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# EXAMPLES: a directory holding reset_latency and enforce_demo built elsewhere (e.g. from an older
# commit, to compare two builds in the same conditions); default: build this tree's.
if [ -z "${EXAMPLES:-}" ]; then
  cargo build --release --quiet --example reset_latency --example enforce_demo
  EXAMPLES="$CARGO_TARGET_DIR/release/examples"
fi
"$EXAMPLES/reset_latency" "$N"
NS="sgnft-bench-$$"
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
ip netns exec "$NS" "$EXAMPLES/enforce_demo" bench 50000
