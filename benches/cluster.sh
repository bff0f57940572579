#!/usr/bin/env bash
# Three-node figures, Warren beside RabbitMQ 3.10.8, interleaved (docs/benchmarks.md, "Cluster").
# Warren's nodes come from benches/local-cluster.sh (AMQP 5672-5674, HTTP 15672-15674), RabbitMQ's from
# benches/rabbitmq-cluster.sh (AMQP 5681-5683, HTTP 15681-15683); both must be up.
#
#   benches/cluster.sh throughput [ROUNDS] [SECONDS]   quorum queue (three replicas), 1 KB
#       persistent, 1 publisher / 1 consumer: confirm window 1000 and 1 at the leader, and
#       window 1000 publishing through a node that does not lead the queue
#   benches/cluster.sh failover [ROUNDS]               kill -9 of the queue's leader while a
#       publisher on another node keeps publishing: the longest time between two confirms
#   benches/cluster.sh idle [QUEUES]                   QUEUES idle quorum queues (default 1000):
#       each node's resident memory and CPU over 30 s of idleness
#
# Every run is bounded (SECONDS, at most a few minutes in all); the queues it makes are deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warren-target}"
cargo bench --bench loadgen --no-run 2>/dev/null
lg=$(ls -t "$CARGO_TARGET_DIR"/release/deps/loadgen-* | grep -v '\.d$' | head -1)
W=(127.0.0.1:5672 127.0.0.1:5673 127.0.0.1:5674)
R=(127.0.0.1:5681 127.0.0.1:5682 127.0.0.1:5683)
QQ=(--quorum --durable --persistent --size 1024)

# Node N's process id: warren's pid file, RabbitMQ's beam (from its status line).
pid() {
  case $1 in
    warren) cat "${WARREN_CLUSTER_DIR:-$PWD/warren-cluster}/n$2.pid" ;;
    rabbitmq) benches/rabbitmq-cluster.sh status 2>/dev/null | sed -n "s/^rabbit$2@.*(pid \([0-9]*\)).*/\1/p" ;;
  esac
}

throughput() {
  local rounds=${1:-3} secs=${2:-10} r
  for r in $(seq "$rounds"); do
    for b in warren rabbitmq; do
      local -n a=$([ $b = warren ] && echo W || echo R)
      "$lg" --addr "${a[0]}" "${QQ[@]}" --confirm 1000 --duration "$secs" --queue bench-leader --label "$b leader c1000 r$r" 2>/dev/null
      "$lg" --addr "${a[0]}" "${QQ[@]}" --confirm 1 --duration "$secs" --queue bench-c1 --label "$b leader c1 r$r" 2>/dev/null
      "$lg" --addr "${a[0]}" --publish-addr "${a[1]}" "${QQ[@]}" --confirm 1000 --duration "$secs" --queue bench-follower \
        --label "$b via non-leader c1000 r$r" 2>/dev/null
    done
  done
}

failover() {
  local rounds=${1:-3} r
  for r in $(seq "$rounds"); do
    for b in warren rabbitmq; do
      local -n a=$([ $b = warren ] && echo W || echo R)
      local q="bench-failover-$r-$$"
      # Declared through node 1, which leads it; published through node 2, consumed through 3.
      "$lg" --addr "${a[0]}" --publish-addr "${a[1]}" --consume-addr "${a[2]}" "${QQ[@]}" --confirm 1000 \
        --duration 20 --keep --queue "$q" --label "$b failover r$r" 2>/dev/null &
      local load=$!
      sleep 8
      if [ $b = warren ]; then benches/local-cluster.sh kill 1 >/dev/null; else benches/rabbitmq-cluster.sh kill 1 >/dev/null; fi
      wait $load || true
      if [ $b = warren ]; then benches/local-cluster.sh start 1 >/dev/null; else benches/rabbitmq-cluster.sh start 1 >/dev/null; fi
      delete "$b" 2 "$q"
    done
  done
}

# Deletes queue $3 through node $2's management API.
delete() {
  local port=$([ "$1" = warren ] && echo $((15671 + $2)) || echo $((15680 + $2)))
  curl -s -o /dev/null -u guest:guest -X DELETE "http://127.0.0.1:$port/api/queues/%2F/$3" || true
}

# Declares (PUT) or deletes (DELETE) quorum queues idle-1..idle-N through the management API
# on port $1, 16 requests at a time.
declare_many() {
  python3 - "$1" "$2" "$3" <<'PY'
import base64, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, n, verb = sys.argv[1], int(sys.argv[2]), sys.argv[3]
auth = "Basic " + base64.b64encode(b"guest:guest").decode()
body = b'{"durable":true,"arguments":{"x-queue-type":"quorum"}}' if verb == "PUT" else None
def one(i):
    req = urllib.request.Request("http://127.0.0.1:%s/api/queues/%%2F/idle-%d" % (port, i), data=body, method=verb,
                                 headers={"authorization": auth, "content-type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(one, range(1, n + 1)))
PY
}

# CPU seconds (user + system) a process used so far.
cpu() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

idle() {
  local n=${1:-1000} b i
  for b in warren rabbitmq; do
    local http=$([ $b = warren ] && echo 15672 || echo 15681)
    local t0=$(date +%s.%N)
    declare_many "$http" "$n" PUT
    echo "[$b idle] declared $n quorum queues in $(echo "$(date +%s.%N) - $t0" | bc) s"
    sleep 30
    local before=() p
    for i in 1 2 3; do p=$(pid $b "$i"); before[$i]=$(cpu "$p"); done
    sleep 30
    for i in 1 2 3; do
      p=$(pid $b "$i")
      echo "[$b idle] node $i: RSS $(rss "$p") MiB, CPU $(echo "scale=1; ($(cpu "$p") - ${before[$i]}) * 100 / 30" | bc) % of a core"
    done
    declare_many "$http" "$n" DELETE
  done
}

case ${1:-} in
  throughput) shift; throughput "$@" ;;
  failover) shift; failover "$@" ;;
  idle) shift; idle "$@" ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
