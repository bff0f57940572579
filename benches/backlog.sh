#!/usr/bin/env bash
# A large backlog on one durable queue: publish N x 1 KB persistent messages with confirms and
# no consumer, restart, drain with one consumer; prints resident memory, data directory size,
# recovery and drain times (docs/benchmarks.md, "A 10-million-message backlog").
#   benches/backlog.sh [N=10000000]
# Uses port 5672 on loopback and a fresh data directory under /tmp; bounded by timeouts.
set -uo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
N=${1:-10000000}
cargo build --release --bin warren 2>/dev/null
BIN=$CARGO_TARGET_DIR/release/warren
LG=$(loadgen_bin)
PY=$HOME/.cache/warren-venv/bin/python
D=$(mktemp -d /tmp/warren-backlog.XXXXXX)
count() { "$PY" -c "import pika,sys; c=pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1',5672)); print(c.channel().queue_declare('backlog',passive=True).method.message_count); c.close()" 2>/dev/null; }
start() { (cd /tmp && exec "$BIN" server --data-dir "$D/data" --amqp-addr 127.0.0.1:5672 --http-addr 127.0.0.1:15672 >> "$D/log" 2>&1) & sleep 0.3; P=$(pgrep -f "warren server --data-dir $D/data"); }
rss() { rss_mib "$P"; }
disk() { du -sm "$D/data" | cut -f1; }
since() { echo "$(date +%s.%N) - $1" | bc; }
start; sleep 2
echo "start: rss $(rss) MB, disk $(disk) MB"
T=$(date +%s.%N)
timeout 1500 "$LG" --size 1024 --duration 600 --durable --persistent --confirm 1000 --consumers 0 --keep --count "$N" --queue backlog 2>/dev/null | tail -1
echo "published in $(since "$T") s: rss $(rss) MB, disk $(disk) MB, count $(count)"
T=$(date +%s.%N); kill "$P"; while kill -0 "$P" 2>/dev/null; do sleep 0.1; done
echo "stopped in $(since "$T") s"
T=$(date +%s.%N); start
for _ in $(seq 1 1200); do C=$(count) && [ -n "$C" ] && break; sleep 0.25; done
echo "recovered $C messages in $(since "$T") s: rss $(rss) MB"
T=$(date +%s.%N)
timeout 900 "$LG" --size 1024 --duration 300 --producers 0 --consumers 1 --prefetch 1000 --multi-ack-every 100 --keep --queue backlog >/dev/null 2>&1 &
L=$!
for _ in $(seq 1 900); do [ "$(count)" = "0" ] && break; sleep 1; done
echo "drained in $(since "$T") s: rss $(rss) MB, disk $(disk) MB"
kill "$L" 2>/dev/null
sleep 15
echo "15 s after draining: rss $(rss) MB, disk $(disk) MB"
kill "$P"; while kill -0 "$P" 2>/dev/null; do sleep 0.1; done
rm -rf "$D"
