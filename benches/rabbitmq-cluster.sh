#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this one machine: the RabbitMQ side of the cluster figures in
# docs/benchmarks.md (Warren's own three nodes come from benches/local-cluster.sh). RabbitMQ is Debian's
# `rabbitmq-server` package (3.10.8 on Debian 12), installed on first use.
#
#   benches/rabbitmq-cluster.sh up        install if needed, start rabbit1..3, join 2 and 3 to 1,
#                                         wait until cluster_status shows 3 running nodes
#   benches/rabbitmq-cluster.sh single    install if needed and start rabbit1 alone (AMQP 5681): the
#                                         RabbitMQ side of single-node figures (`down` stops it)
#   benches/rabbitmq-cluster.sh status    each node's pid and ports, and cluster_status
#   benches/rabbitmq-cluster.sh kill N    SIGKILL node N's Erlang VM (N = 1..3)
#   benches/rabbitmq-cluster.sh start N   start node N again and wait until it runs
#   benches/rabbitmq-cluster.sh down      stop the three nodes (rabbitmqctl stop, then their pids)
#   benches/rabbitmq-cluster.sh clean     down, then remove the data directory
#   benches/rabbitmq-cluster.sh cli N TOOL [ARGS...]
#                                         run rabbitmqctl / rabbitmq-queues / rabbitmq-diagnostics /
#                                         rabbitmq-plugins against node N with the cluster's cookie,
#                                         e.g. `cli 1 rabbitmq-queues quorum_status q1`
#
# Node N (1..3) is rabbitN@localhost: AMQP 127.0.0.1:568N, management (HTTP API, guest/guest)
# 127.0.0.1:1568N, Erlang distribution 127.0.0.1:2568N; epmd's 4369 is shared. Nothing listens
# on 5672/15672/25672, which belong to Warren (a single node, or benches/local-cluster.sh's nodes).
#   rabbitmqadmin -P 15681 declare queue name=q1 durable=true arguments='{"x-queue-type":"quorum"}'
#
# Everything lives under $RABBIT_CLUSTER_DIR (default ~/.cache/warren-rabbit-cluster): nN/mnesia,
# nN/log, nN/rabbitmq.conf, nN/enabled_plugins (rabbitmq_management), and the shared Erlang
# cookie in .erlang.cookie there: the nodes and the CLI run with HOME set to that directory, so
# root's own ~/.erlang.cookie and Debian's /var/lib/rabbitmq are left alone (3.10 still honours
# RABBITMQ_ERLANG_COOKIE, but every CLI call then prints a deprecation warning). The nodes run
# as the calling user (root here) from /usr/lib/rabbitmq/bin, not through /usr/sbin's wrappers,
# which would switch to the rabbitmq user. Installing the package would start Debian's own
# service on 5672: the install runs under a policy-rc.d that forbids it (Docker images already
# have one), and the service is then disabled, and stopped if it runs anyway. epmd (4369),
# which outlives the nodes, is stopped by `down` when this cluster started it and nothing else
# is registered with it. Every wait is bounded (RABBIT_START_TIMEOUT, default 240 s per node).
set -euo pipefail

DIR=${RABBIT_CLUSTER_DIR:-$HOME/.cache/warren-rabbit-cluster}
HOSTPART=${RABBIT_CLUSTER_HOST:-localhost}
START_TIMEOUT=${RABBIT_START_TIMEOUT:-240}
NODES=3
BIN=/usr/lib/rabbitmq/bin
MARK=.warren-rabbit-cluster

node() { echo "rabbit$1@$HOSTPART"; }
amqp() { echo $((5680 + $1)); }
http() { echo $((15680 + $1)); }
dist() { echo $((25680 + $1)); }
say() { echo "rabbitmq-cluster: $*"; }
die() { echo "rabbitmq-cluster: $*" >&2; exit 1; }
check_n() { [[ "${1:-}" =~ ^[1-3]$ ]] || { echo "which node? 1..$NODES" >&2; exit 2; }; }

# ---- installation --------------------------------------------------------------------------

installed() { [ -x "$BIN/rabbitmq-server" ] && [ -x "$BIN/rabbitmqctl" ]; }

# Debian's own rabbitmq-server service (node rabbit@<hostname>, port 5672, run as the rabbitmq
# user): disable it, and stop it if it runs. Its stop action runs rabbitmqctl, which would leave
# an epmd behind when nothing runs, so it is called only for a running node.
stop_default_service() {
  if [ -d /run/systemd/system ]; then
    systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
  fi
  if [ -x /etc/init.d/rabbitmq-server ]; then
    update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
    if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
      # `service`, unlike invoke-rc.d, does not ask policy-rc.d.
      timeout 120 service rabbitmq-server stop >/dev/null 2>&1 || true
    fi
  fi
}

install_rabbitmq() {
  installed && return 0
  [ "$(id -u)" = 0 ] || die "rabbitmq-server is not installed and installing it needs root"
  say "installing Debian's rabbitmq-server (apt-get)"
  # Keep the package's postinst from starting Debian's default node on 5672: invoke-rc.d and
  # deb-systemd-invoke ask /usr/sbin/policy-rc.d, and 101 means "action forbidden". A
  # policy-rc.d already there (Docker images ship one that returns 101) is left as it is.
  local ours=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# rabbitmq-cluster.sh: no service starts during this install\nexit 101\n' \
      > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    ours=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -q rabbitmq-server || rc=$?
  if [ "$rc" != 0 ]; then
    say "apt-get install failed ($rc); updating the package lists and trying again"
    rc=0
    timeout 600 apt-get update -q && \
      DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -q rabbitmq-server || rc=$?
  fi
  [ -n "$ours" ] && rm -f /usr/sbin/policy-rc.d
  if [ "$rc" != 0 ] || ! installed; then die "installing rabbitmq-server failed"; fi
  stop_default_service
  say "installed $(dpkg-query -W -f '${Version}' rabbitmq-server);" \
    "Debian's own rabbitmq-server service kept from starting, and disabled"
}

# ---- processes -------------------------------------------------------------------------------

# The pid of node N's Erlang VM: a beam.smp whose environment names the node and this data
# directory (3.10 names the node at run time, so it is not on the command line; CLI tools'
# VMs carry neither variable).
node_pid() {
  local want here="WARREN_RABBIT_CLUSTER_DIR=$DIR" p comm
  want="RABBITMQ_NODENAME=$(node "$1")"
  for p in /proc/[0-9]*; do
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    [ "$comm" = beam.smp ] || continue
    tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF "$want" || continue
    tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF "$here" || continue
    echo "${p#/proc/}"; return 0
  done
  return 1
}

# A CLI tool against node N, bounded in time, with the cluster's cookie (HOME=$DIR).
cli() {
  local n=$1 tool=$2; shift 2
  HOME=$DIR ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_CONF_ENV_FILE="$DIR/n$n/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/n$n/enabled_plugins" \
    timeout "${CLI_TIMEOUT:-120}" "$BIN/$tool" -n "$(node "$n")" "$@"
}

prepare() {
  mkdir -p "$DIR"
  touch "$DIR/$MARK"
  if [ ! -s "$DIR/.erlang.cookie" ]; then
    (umask 077
     head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40 > "$DIR/.erlang.cookie")
  fi
  chmod 400 "$DIR/.erlang.cookie"
  local n
  for n in $(seq 1 $NODES); do
    mkdir -p "$DIR/n$n/mnesia" "$DIR/n$n/log"
    cat > "$DIR/n$n/rabbitmq.conf" <<EOF
# written by benches/rabbitmq-cluster.sh
cluster_name = warren-bench-rabbitmq
management.tcp.ip = 127.0.0.1
management.tcp.port = $(http "$n")
EOF
    echo '[rabbitmq_management].' > "$DIR/n$n/enabled_plugins"
    : > "$DIR/n$n/rabbitmq-env.conf"   # instead of /etc/rabbitmq/rabbitmq-env.conf
  done
}

start_node() {
  local n=$1 pid
  if pid=$(node_pid "$n"); then say "$(node "$n") already runs (pid $pid)"; return 0; fi
  (
    cd "$DIR/n$n"
    RABBITMQ_NODENAME=$(node "$n") RABBITMQ_NODE_PORT=$(amqp "$n") RABBITMQ_DIST_PORT=$(dist "$n")
    export HOME=$DIR WARREN_RABBIT_CLUSTER_DIR=$DIR ERL_EPMD_ADDRESS=127.0.0.1 \
      RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT \
      RABBITMQ_MNESIA_BASE="$DIR/n$n/mnesia" RABBITMQ_LOG_BASE="$DIR/n$n/log" \
      RABBITMQ_CONFIG_FILE="$DIR/n$n/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/n$n/advanced.config" \
      RABBITMQ_CONF_ENV_FILE="$DIR/n$n/rabbitmq-env.conf" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/n$n/enabled_plugins" \
      RABBITMQ_PID_FILE="$DIR/n$n/rabbit.pid" \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    # Own session: the node outlives this script and a Ctrl-C on it.
    exec setsid "$BIN/rabbitmq-server" >> "$DIR/n$n/console.log" 2>&1 < /dev/null
  ) &
  echo $! > "$DIR/n$n/launcher.pid"
  say "$(node "$n") starting: amqp 127.0.0.1:$(amqp "$n"), http 127.0.0.1:$(http "$n")," \
    "dist $(dist "$n"), log $DIR/n$n/log"
}

# Wait (bounded) until node N answers and its RabbitMQ application has started.
await_node() {
  local n=$1 deadline=$((SECONDS + START_TIMEOUT)) launcher
  launcher=$(cat "$DIR/n$n/launcher.pid" 2>/dev/null || true)
  until CLI_TIMEOUT=30 cli "$n" rabbitmq-diagnostics -q ping >/dev/null 2>&1; do
    if ! node_pid "$n" >/dev/null &&
       { [ -z "$launcher" ] || ! kill -0 "$launcher" 2>/dev/null; }; then
      tail -n 20 "$DIR/n$n/console.log" >&2 2>/dev/null || true
      die "$(node "$n") exited while starting; see $DIR/n$n/console.log and $DIR/n$n/log"
    fi
    [ $SECONDS -lt "$deadline" ] ||
      die "$(node "$n") did not answer within ${START_TIMEOUT}s; see $DIR/n$n/log"
    sleep 1
  done
  local left=$((deadline - SECONDS)); [ $left -gt 0 ] || left=1
  CLI_TIMEOUT=$((left + 15)) cli "$n" rabbitmqctl -q await_startup --timeout "$left" >/dev/null ||
    die "$(node "$n") did not finish starting within ${START_TIMEOUT}s; see $DIR/n$n/log"
  say "$(node "$n") runs (pid $(node_pid "$n" || echo '?'))"
}

# Node 1's view, as JSON fields: disk_nodes or running_nodes, one name a line.
cluster_field() {
  cli 1 rabbitmqctl -q cluster_status --formatter json 2>/dev/null |
    /usr/bin/python3 -c 'import json, sys
for x in json.load(sys.stdin).get(sys.argv[1], []): print(x)' "$1"
}

join_node() {
  local n=$1
  if cluster_field disk_nodes | grep -qxF "$(node "$n")"; then
    say "$(node "$n") is already a member of $(node 1)'s cluster"; return 0
  fi
  say "joining $(node "$n") to $(node 1): stop_app, reset, join_cluster, start_app"
  # join_cluster prints the CLI's own log lines (feature flags, tracked connection tables):
  # kept in join.log, shown only if a step fails.
  local log="$DIR/n$n/join.log"
  : > "$log"
  { cli "$n" rabbitmqctl -q stop_app &&
    { cli "$n" rabbitmqctl -q reset || cli "$n" rabbitmqctl -q force_reset; } &&
    cli "$n" rabbitmqctl -q join_cluster "$(node 1)" &&
    cli "$n" rabbitmqctl -q start_app &&
    CLI_TIMEOUT=$((START_TIMEOUT + 15)) \
      cli "$n" rabbitmqctl -q await_startup --timeout "$START_TIMEOUT"
  } >> "$log" 2>&1 || { cat "$log" >&2; die "joining $(node "$n") to $(node 1) failed"; }
}

await_cluster() {
  local deadline=$((SECONDS + START_TIMEOUT)) running=""
  while :; do
    running=$(cluster_field running_nodes | sort | tr '\n' ' ' || true)
    [ "$(wc -w <<< "$running")" = $NODES ] && break
    [ $SECONDS -lt "$deadline" ] ||
      die "cluster_status on $(node 1) shows running nodes [$running] after ${START_TIMEOUT}s"
    sleep 1
  done
  say "cluster_status on $(node 1): running nodes ${running% }"
}

# No RabbitMQ may hold Warren's ports (Debian's default node would take 5672/15672/25672).
check_warren_ports() {
  local bad="" p line
  for p in 5672 15672 25672; do
    line=$(ss -Hltnp "sport = :$p" 2>/dev/null || true)
    if grep -q 'beam' <<< "$line"; then bad="$bad $p"; fi
  done
  if [ -n "$bad" ]; then
    say "an Erlang VM listens on Warren's port(s)$bad (Debian's default rabbitmq-server?);" \
      "stopping that service"
    stop_default_service
    sleep 2
    bad=""
    for p in 5672 15672 25672; do
      line=$(ss -Hltnp "sport = :$p" 2>/dev/null || true)
      if grep -q 'beam' <<< "$line"; then bad="$bad $p"; fi
    done
    [ -z "$bad" ] || die "RabbitMQ still listens on$bad: $(ss -Hltnp | grep beam)"
  fi
  say "no RabbitMQ listens on 5672/15672/25672"
}

stop_node() {
  local n=$1 pid sig="" deadline
  if ! pid=$(node_pid "$n"); then
    say "$(node "$n") is not running"; rm -f "$DIR/n$n/launcher.pid"; return 0
  fi
  say "stopping $(node "$n") (pid $pid)"
  CLI_TIMEOUT=90 cli "$n" rabbitmqctl -q stop >/dev/null 2>&1 || true
  for sig in "" TERM KILL; do
    if [ -n "$sig" ]; then
      say "$(node "$n") still runs; SIG$sig to pid $pid"
      kill "-$sig" "$pid" 2>/dev/null || true
    fi
    deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt "$deadline" ]; do sleep 0.2; done
    kill -0 "$pid" 2>/dev/null || break
  done
  kill -0 "$pid" 2>/dev/null && die "$(node "$n") (pid $pid) would not stop"
  rm -f "$DIR/n$n/launcher.pid"
  say "$(node "$n") stopped"
}

# epmd outlives the nodes. End it (by its pid) if one of our nodes or CLI calls started it,
# as its environment shows, and no Erlang node is registered with it any more.
stop_epmd() {
  local p pid="" epmd
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = epmd ] || continue
    tr '\0' '\n' < "$p/environ" 2>/dev/null |
      grep -qxF -e "WARREN_RABBIT_CLUSTER_DIR=$DIR" -e "HOME=$DIR" || continue
    pid=${p#/proc/}; break
  done
  [ -n "$pid" ] || return 0
  epmd=$(command -v epmd || echo /usr/lib/erlang/bin/epmd)
  if "$epmd" -names 2>/dev/null | grep -q '^name '; then
    say "epmd (pid $pid) still has nodes registered; left running"; return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  say "epmd (pid $pid, started for this cluster) stopped"
}

down() {
  [ -d "$DIR" ] || { say "nothing under $DIR"; return 0; }
  local n
  for n in $(seq $NODES -1 1); do stop_node "$n"; done
  stop_epmd
}

status() {
  local n pid first="" state
  for n in $(seq 1 $NODES); do
    if pid=$(node_pid "$n" 2>/dev/null); then
      state="running (pid $pid)"; [ -n "$first" ] || first=$n
    else
      state=stopped
    fi
    printf '%s %-20s amqp 127.0.0.1:%s  http 127.0.0.1:%s  dist 127.0.0.1:%s\n' \
      "$(node "$n")" "$state" "$(amqp "$n")" "$(http "$n")" "$(dist "$n")"
  done
  [ -n "$first" ] || return 0
  echo "--- cluster_status on $(node "$first")"
  CLI_TIMEOUT=60 cli "$first" rabbitmqctl -q cluster_status | sed 's/\x1b\[[0-9;]*m//g' |
    sed '/^Feature flags/,$d' || true
}

case "${1:-}" in
  up)
    T0=$SECONDS
    install_rabbitmq
    prepare
    for i in $(seq 1 $NODES); do start_node "$i"; done
    for i in $(seq 1 $NODES); do await_node "$i"; done
    for i in $(seq 2 $NODES); do join_node "$i"; done
    await_cluster
    check_warren_ports
    say "up in $((SECONDS - T0)) s" ;;
  single)
    install_rabbitmq
    prepare
    start_node 1
    await_node 1
    check_warren_ports ;;
  start)
    check_n "${2:-}"; installed || die "not installed: run '$0 up' first"
    [ -f "$DIR/$MARK" ] || die "no cluster under $DIR: run '$0 up' first"
    prepare; start_node "$2"; await_node "$2" ;;
  kill)
    check_n "${2:-}"
    if pid=$(node_pid "$2"); then
      kill -KILL "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && die "pid $pid survived SIGKILL"
      say "$(node "$2") killed (SIGKILL to pid $pid)"
    else
      say "$(node "$2") is not running"
    fi ;;
  down) down ;;
  clean)
    down
    if [ -d "$DIR" ]; then
      [ -f "$DIR/$MARK" ] || die "$DIR has no $MARK marker; not removing it"
      rm -rf "$DIR"; say "removed $DIR"
    fi ;;
  status) installed || die "not installed"; status ;;
  cli)
    check_n "${2:-}"; [ -n "${3:-}" ] || die "cli N TOOL [ARGS...]"
    case "$3" in
      rabbitmqctl|rabbitmq-queues|rabbitmq-diagnostics|rabbitmq-plugins|rabbitmq-upgrade) ;;
      *) die "TOOL: rabbitmqctl, rabbitmq-queues, rabbitmq-diagnostics, rabbitmq-plugins or" \
           "rabbitmq-upgrade" ;;
    esac
    n=$2 tool=$3; shift 3; cli "$n" "$tool" "$@" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
