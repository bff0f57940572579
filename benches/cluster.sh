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
#   benches/cluster.sh scale [QUEUES]                  Warren alone (issue 13's benchmark): QUEUES
#       quorum queues (default 10000) declared through the three nodes in turn, so each leads a
#       third; resident memory and idle CPU per node; then node 1 is killed while sample queues
#       take confirmed publishes: how long until every queue has a leader again, and the
#       longest confirm gap on queues that kept their leader and on queues that lost it
#
# Every run is bounded (SECONDS, at most a few minutes in all); the queues it makes are deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
lg=$(loadgen_bin)
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

# Declares (PUT) or deletes (DELETE) quorum queues PREFIX-1..PREFIX-N through the management
# API on the ports given (comma-separated; queue i goes to port i mod their number), 16
# requests at a time per port.
declare_many() {
  python3 - "$1" "$2" "$3" "${4:-idle}" <<'PY'
import base64, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
ports, n, verb, prefix = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], sys.argv[4]
auth = "Basic " + base64.b64encode(b"guest:guest").decode()
body = b'{"durable":true,"arguments":{"x-queue-type":"quorum"}}' if verb == "PUT" else None
def one(i):
    port = ports[i % len(ports)]
    req = urllib.request.Request("http://127.0.0.1:%s/api/queues/%%2F/%s-%d" % (port, prefix, i), data=body,
                                 method=verb, headers={"authorization": auth, "content-type": "application/json"})
    urllib.request.urlopen(req, timeout=120).read()
with ThreadPoolExecutor(16 * len(ports)) as pool:
    list(pool.map(one, range(1, n + 1)))
PY
}

# CPU seconds (user + system) a process used so far.

idle() {
  local n=${1:-1000} b i
  for b in warren rabbitmq; do
    local http=$([ $b = warren ] && echo 15672 || echo 15681)
    local t0=$(date +%s.%N)
    declare_many "$http" "$n" PUT idle
    echo "[$b idle] declared $n quorum queues in $(echo "$(date +%s.%N) - $t0" | bc) s"
    sleep 30
    local before=() p
    for i in 1 2 3; do p=$(pid $b "$i"); before[$i]=$(cpu_s "$p"); done
    sleep 30
    for i in 1 2 3; do
      p=$(pid $b "$i")
      echo "[$b idle] node $i: RSS $(rss_mib "$p") MiB, CPU $(echo "scale=1; ($(cpu_s "$p") - ${before[$i]}) * 100 / 30" | bc) % of a core"
    done
    declare_many "$http" "$n" DELETE idle
  done
}

# The Raft groups node $1 of Warren's cluster leads (its Prometheus gauge).
leaders() {
  local v
  v=$(curl -s -m 2 "http://127.0.0.1:$((15691 + $1))/metrics" | awk '/^warren_raft_leaders / { print $2 }') || true
  echo "${v:-0}"
}

scale() {
  local n=${1:-10000} i p t0
  local ports=15672,15673,15674 # queue i is declared through node (i mod 3) + 1, which leads it
  t0=$(date +%s.%N)
  declare_many "$ports" "$n" PUT scale
  echo "[scale] declared $n quorum queues (three replicas) in $(echo "$(date +%s.%N) - $t0" | bc) s"
  for i in 1 2 3; do echo "[scale] node $i leads $(leaders "$i") groups"; done
  sleep 30
  local before=()
  for i in 1 2 3; do p=$(pid warren "$i"); before[$i]=$(cpu_s "$p"); done
  sleep 30
  for i in 1 2 3; do
    p=$(pid warren "$i")
    echo "[scale] idle node $i: RSS $(rss_mib "$p") MiB, CPU $(echo "scale=1; ($(cpu_s "$p") - ${before[$i]}) * 100 / 30" | bc) % of a core"
  done
  # Confirmed load on six sample queues through node 2: three that node 2 leads (kept), three
  # that node 1 leads (lost when it is killed).
  local loads=() q
  for q in 1 4 7 3 6 9; do
    local kind=$([ $((q % 3)) = 1 ] && echo "kept leader" || echo "lost leader")
    "$lg" --addr "${W[1]}" "${QQ[@]}" --keep --confirm 100 --rate 200 --duration 40 --queue "scale-$q" \
      --label "[scale] scale-$q ($kind)" 2>/dev/null &
    loads+=($!)
  done
  sleep 10
  t0=$(date +%s.%N)
  benches/local-cluster.sh kill 1 >/dev/null
  local deadline=$(($(date +%s) + 120)) led=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    led=$(( $(leaders 2) + $(leaders 3) ))
    [ "$led" -gt "$n" ] && break # every queue and the metadata group
    sleep 0.2
  done
  echo "[scale] node 1 killed: nodes 2 and 3 lead $led groups after $(echo "$(date +%s.%N) - $t0" | bc) s"
  for p in "${loads[@]}"; do wait "$p" || true; done
  for i in 2 3; do
    p=$(pid warren "$i")
    echo "[scale] node $i after the failover: RSS $(rss_mib "$p") MiB"
  done
  t0=$(date +%s.%N)
  benches/local-cluster.sh start 1 >/dev/null
  echo "[scale] node 1 restarted and serving in $(echo "$(date +%s.%N) - $t0" | bc) s, RSS $(rss_mib "$(pid warren 1)") MiB"
  t0=$(date +%s.%N)
  declare_many 15673,15674 "$n" DELETE scale
  echo "[scale] deleted $n quorum queues in $(echo "$(date +%s.%N) - $t0" | bc) s"
}

case ${1:-} in
  throughput) shift; throughput "$@" ;;
  scale) shift; scale "$@" ;;
  failover) shift; failover "$@" ;;
  idle) shift; idle "$@" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
