#!/usr/bin/env bash
# Delayed-message throughput (docs/benchmarks.md): N persistent messages published with
# confirms through a durable x-delayed-message exchange, all with the same delay, and one
# consumer on the bound queue. Prints the hold rate (publish + confirm), the broker's memory
# while they are held, and the release rate once they fall due (the per-second lines).
# Usage: benches/delayed.sh [N] [DELAY_MS] [extra loadgen flags]. Loopback port 5672, a fresh
# data directory under /tmp; bounded by timeouts.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
DELAY=${2:-15000}
shift 2 2>/dev/null || shift $#
. benches/lib.sh
cargo build --release --bin warren 2>/dev/null
BIN=$CARGO_TARGET_DIR/release/warren
LG=$(loadgen_bin)
D=$(mktemp -d /tmp/warren-delayed.XXXXXX)
(cd /tmp && exec "$BIN" server --data-dir "$D/data" --amqp-addr 127.0.0.1:5672 --http-addr 127.0.0.1:15672 > "$D/log" 2>&1) &
sleep 1
P=$(pgrep -f "warren server --data-dir $D/data")
rss() { rss_mib "$P"; }
echo "start: rss $(rss) MB; $N messages, delay $DELAY ms"
( sleep $(( DELAY / 1000 - 1 )); echo "just before they fall due: rss $(rss) MB, data $(du -sm "$D/data" | cut -f1) MB" ) &
W=$!
timeout 300 "$LG" --durable --persistent --confirm 1000 --size 256 --delay "$DELAY" --count "$N" \
  --consumers 1 --prefetch 1000 --multi-ack-every 100 --duration 120 --queue delayedq "$@"
wait "$W"
echo "end: rss $(rss) MB"
kill "$P"; while kill -0 "$P" 2>/dev/null; do sleep 0.1; done
rm -rf "$D"
