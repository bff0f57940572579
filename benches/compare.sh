#!/usr/bin/env bash
# Side-by-side throughput: the same load generator against Warren and RabbitMQ, interleaved
# so both see the same machine conditions. Usage:
#   benches/compare.sh WARREN_ADDR RABBIT_ADDR [ROUNDS] [SECONDS] [extra loadgen flags...]
# e.g. benches/compare.sh 127.0.0.1:5672 127.0.0.1:5673 3 10
set -euo pipefail
cd "$(dirname "$0")/.."
warren=$1 rabbit=$2 rounds=${3:-3} secs=${4:-10}
shift $(( $# < 4 ? $# : 4 ))
. benches/lib.sh
lg=$(loadgen_bin)
for r in $(seq "$rounds"); do
  for size in 16 1024; do
    for target in "warren $warren" "rabbitmq $rabbit"; do
      set -- $target "$@"
      name=$1 addr=$2; shift 2
      "$lg" --addr "$addr" --size "$size" --duration "$secs" --label "$name r$r" "$@" 2>/dev/null
    done
  done
done
