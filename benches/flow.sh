#!/usr/bin/env bash
# Publisher flow control, side by side: unthrottled publishers against prefetch-bound consumers
# that ack every message (issue 17's scenarios), the same load generator against Warren and
# RabbitMQ, interleaved. Prints each run's line from benches/loadgen.rs (rates, backlog peak,
# end-to-end latency) and the broker's CPU seconds and resident memory after the run.
#
#   benches/flow.sh WARREN_ADDR RABBIT_ADDR [ROUNDS] [SECONDS] [extra loadgen flags...]
#   e.g. benches/flow.sh 127.0.0.1:5672 127.0.0.1:5681 3 10
#
# Start Warren with `scripts/start` or the release binary, RabbitMQ with
# `benches/rabbitmq-cluster.sh single` (AMQP 5681). Shapes: 1 publisher / 1 consumer and
# 4 / 4, at 16 B and 1 KB, prefetch 1000, transient messages, one classic queue.
set -euo pipefail
cd "$(dirname "$0")/.."
warren=$1 rabbit=$2 rounds=${3:-3} secs=${4:-10}
shift $(( $# < 4 ? $# : 4 ))
. benches/lib.sh
lg=$(loadgen_bin)

# The pid listening on ADDR's port.
pid_of() {
  ss -ltnpH "sport = :${1##*:}" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}

for r in $(seq "$rounds"); do
  for shape in "1 1" "4 4"; do
    set -- $shape "$@"
    np=$1 nc=$2; shift 2
    for size in 16 1024; do
      for target in "warren $warren" "rabbitmq $rabbit"; do
        set -- $target "$@"
        name=$1 addr=$2; shift 2
        pid=$(pid_of "$addr")
        [ -n "$pid" ] || { echo "nothing listens on $addr" >&2; exit 1; }
        t0=$(cpu_s "$pid")
        "$lg" --addr "$addr" --size "$size" --duration "$secs" --producers "$np" --consumers "$nc" \
          --prefetch 1000 --label "$name r$r" "$@" 2>/dev/null
        t1=$(cpu_s "$pid")
        echo "[$name r$r] broker CPU $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s, RSS after $(rss_mib "$pid") MiB"
        sleep 2
      done
    done
  done
done
