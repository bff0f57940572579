#!/usr/bin/env bash
# A three-node Warren cluster of plain processes on this machine (no containers): the one the
# cluster benchmarks measure beside RabbitMQ's own three processes (benches/cluster.sh), and a
# quick way to try clustering by hand. (`scripts/cluster` runs the containerized cluster behind
# HAProxy.)
#
#   benches/local-cluster.sh up        build (release) and start nodes n1..n3, wait until they serve
#   benches/local-cluster.sh status    which nodes run, and their ports
#   benches/local-cluster.sh kill N    SIGKILL node N (1..3);  `start N` starts it again
#   benches/local-cluster.sh down      stop every node (SIGTERM);  `clean` also removes the data
#
# Node N listens on AMQP 567(1+N), management 1567(1+N), Prometheus 1569(1+N) and cluster
# 2567(1+N), all on 127.0.0.1: n1 takes 5672/15672 like a single node, n2 5673/15673, n3
# 5674/15674. guest/guest. Data, logs and the shared secret are under ./warren-cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${WARREN_CLUSTER_DIR:-$PWD/warren-cluster}
NODES=3

amqp() { echo $((5671 + $1)); }
http() { echo $((15671 + $1)); }
prom() { echo $((15691 + $1)); }
clus() { echo $((25671 + $1)); }
peers() {
  local p="" i
  for i in $(seq 1 $NODES); do p="$p${p:+,}127.0.0.1:$(clus "$i")"; done
  echo "$p"
}
bin() { echo "$CARGO_TARGET_DIR/release/warren"; }
running() { [ -f "$DIR/n$1.pid" ] && kill -0 "$(cat "$DIR/n$1.pid")" 2>/dev/null; }

build() {
  . scripts/env.sh
  require_cargo
  cargo build --release --locked --bin warren
}

start_node() {
  local n=$1
  if running "$n"; then echo "n$n already runs (pid $(cat "$DIR/n$n.pid"))"; return; fi
  mkdir -p "$DIR"
  [ -f "$DIR/secret" ] || head -c 24 /dev/urandom | base64 > "$DIR/secret"
  "$(bin)" server --node-name "warren@n$n" --data-dir "$DIR/n$n" \
    --amqp-addr "127.0.0.1:$(amqp "$n")" --http-addr "127.0.0.1:$(http "$n")" \
    --prometheus-addr "127.0.0.1:$(prom "$n")" --cluster-addr "127.0.0.1:$(clus "$n")" \
    --peers "$(peers)" --cluster-secret-file "$DIR/secret" >>"$DIR/n$n.log" 2>&1 &
  echo $! > "$DIR/n$n.pid"
  echo "n$n started (pid $!): amqp://guest:guest@127.0.0.1:$(amqp "$n")  http://127.0.0.1:$(http "$n")  log $DIR/n$n.log"
}

await_node() {
  "$(bin)" ctl --amqp-addr "127.0.0.1:$(amqp "$1")" await_startup --timeout 300 >/dev/null ||
    { echo "n$1 did not come up; see $DIR/n$1.log" >&2; exit 1; }
  echo "n$1 serves"
}

stop_node() {
  local n=$1 sig=$2
  if running "$n"; then
    local pid; pid=$(cat "$DIR/n$n.pid")
    kill "-$sig" "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "n$n stopped (SIG$sig)"
  fi
  rm -f "$DIR/n$n.pid"
}

check_n() { [[ "${1:-}" =~ ^[1-3]$ ]] || { echo "which node? 1..$NODES" >&2; exit 2; }; }

case "${1:-}" in
  up)
    build
    for i in $(seq 1 $NODES); do start_node "$i"; done
    for i in $(seq 1 $NODES); do await_node "$i"; done ;;
  start) check_n "${2:-}"; build; start_node "$2"; await_node "$2" ;;
  kill) check_n "${2:-}"; stop_node "$2" KILL ;;
  down) for i in $(seq 1 $NODES); do stop_node "$i" TERM; done ;;
  clean) for i in $(seq 1 $NODES); do stop_node "$i" TERM; done; rm -rf "$DIR"; echo "removed $DIR" ;;
  status)
    for i in $(seq 1 $NODES); do
      if running "$i"; then state="running (pid $(cat "$DIR/n$i.pid"))"; else state="stopped"; fi
      echo "n$i $state  amqp 127.0.0.1:$(amqp "$i")  http 127.0.0.1:$(http "$i")  cluster 127.0.0.1:$(clus "$i")"
    done ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
