#!/usr/bin/env bash
# One queue holding 1,000,000 messages with a 30 s TTL and no consumer: resident memory, the
# broker's CPU while idle and while expiring them (docs/benchmarks.md). Extra arguments go to
# the load generator, e.g. `benches/ttl.sh --durable --persistent`.
# Uses port 5672 on loopback and a fresh data directory under /tmp; bounded by timeouts.
set -uo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
cargo build --release --bin warren 2>/dev/null
BIN=$CARGO_TARGET_DIR/release/warren
LG=$(loadgen_bin)
PY=$HOME/.cache/warren-venv/bin/python
D=$(mktemp -d /tmp/warren-ttl.XXXXXX)
(cd /tmp && exec "$BIN" server --data-dir "$D/data" --amqp-addr 127.0.0.1:5672 --http-addr 127.0.0.1:15672 > "$D/log" 2>&1) &
sleep 1
P=$(pgrep -f "warren server --data-dir $D/data")
count() { "$PY" -c "import pika; c=pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1',5672)); print(c.channel().queue_declare('ttlq',passive=True).method.message_count); c.close()" 2>/dev/null; }
cpu_ms() { awk '{print ($14+$15)*10}' "/proc/$P/stat"; }
rss() { rss_mib "$P"; }
echo "start: rss $(rss) MB"
T0=$(date +%s.%N)
timeout 300 "$LG" --size 16 --duration 120 --ttl 30000 --consumers 0 --keep --count 1000000 --confirm 1000 --queue ttlq "$@" 2>/dev/null | tail -1
echo "published: rss $(rss) MB, count $(count)"
C1=$(cpu_ms); sleep 10; C2=$(cpu_ms)
echo "idle 10 s with 1M messages waiting to expire: broker CPU $((C2 - C1)) ms"
for _ in $(seq 1 240); do [ "$(count)" = "0" ] && break; sleep 0.5; done
echo "all expired $(echo "$(date +%s.%N) - $T0" | bc) s after the first publish; CPU since the idle period $(( $(cpu_ms) - C2 )) ms"
kill "$P"; while kill -0 "$P" 2>/dev/null; do sleep 0.1; done
rm -rf "$D"
