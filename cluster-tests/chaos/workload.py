"""The history-recording workload: publishers with confirms and consumers with manual acks
(pika, as a RabbitMQ user writes them), through HAProxy and straight at nodes, each event
written to the history (``checker.py`` reads it) as it happens.

Each publisher sends values ``p:seq`` in order, one confirm at a time, to one target (a
quorum queue; a durable delayed exchange feeding one; a deduplicating queue, where a value
whose publish ended in doubt is sent again with the same deduplication header). Every
attempt is recorded with its outcome: ``ack``, ``nack``, or ``error`` (the connection or
channel died first: indeterminate). A connection lost is made again (to the same endpoint),
so a publisher keeps going through every fault. Consumers record each delivery with its
``redelivered`` flag and ``x-delivery-count`` and the node they are connected through, then
ack it. After the faults, ``drain`` empties every queue through every node with
``basic.get`` and records each node's view of each queue's depth.
"""

import json
import threading
import time

import pika

# Queues and what publishes to them.
QUORUM = "chaos-q"
DELAYED_X = "chaos-delayed"
DELAYED_Q = "chaos-d"
DEDUP = "chaos-dedup"
DELAY_MS = 500
# The drain ends once every node said every queue is empty for this long (a delayed store
# retries what a queue did not take every second).
QUIET = 5.0


class History:
    """The history file: JSON lines, `t` in seconds since the run began (monotonic)."""

    def __init__(self, path):
        self.began = time.monotonic()
        self._f = open(path, "w")
        self._lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.began

    def record(self, ev, **fields):
        fields = {"ev": ev, "t": round(self.now(), 4), **fields}
        line = json.dumps(fields, separators=(",", ":"))
        with self._lock:
            # A thread still running after the end (its publish never answered) writes no more.
            if not self._f.closed:
                self._f.write(line + "\n")
                self._f.flush()

    def close(self):
        with self._lock:
            self._f.close()


def declare(cluster):
    """The queues and the delayed exchange, declared through HAProxy."""
    conn = connect(cluster, "haproxy")
    try:
        ch = conn.channel()
        quorum = {"x-queue-type": "quorum"}
        ch.queue_declare(QUORUM, durable=True, arguments=quorum)
        ch.queue_declare(DELAYED_Q, durable=True, arguments=quorum)
        ch.queue_declare(DEDUP, durable=True, arguments={**quorum, "x-message-deduplication": True})
        ch.exchange_declare(DELAYED_X, "x-delayed-message", durable=True, arguments={"x-delayed-type": "direct"})
        ch.queue_bind(DELAYED_Q, DELAYED_X, routing_key=DELAYED_Q)
    finally:
        conn.close()


def connect(cluster, via, heartbeat=5):
    host, port = cluster.endpoint(via)
    user, password = cluster.credentials()
    params = pika.ConnectionParameters(
        host, port, "/", pika.PlainCredentials(user, password), heartbeat=heartbeat,
        connection_attempts=1, socket_timeout=3, stack_timeout=6, blocked_connection_timeout=30,
    )
    return pika.BlockingConnection(params)


class Publisher(threading.Thread):
    """Publishes `p:1`, `p:2`, ... to `target` ("quorum", "delayed" or "dedup") via `via`."""

    def __init__(self, cluster, history, name, target, via, stop):
        super().__init__(name=name, daemon=True)
        self.cluster, self.history, self.p, self.target, self.via, self.stop = cluster, history, name, target, via, stop
        self.seq = 0
        self.connects = 0
        # Publishers stop before the consumers do.
        self.stop_own = threading.Event()

    def done(self):
        return self.stop.is_set() or self.stop_own.is_set()

    def route(self):
        if self.target == "delayed":
            return DELAYED_X, DELAYED_Q, DELAYED_Q
        if self.target == "dedup":
            return "", DEDUP, DEDUP
        return "", QUORUM, QUORUM

    def run(self):
        exchange, key, queue = self.route()
        again = None  # a dedup value in doubt, sent again
        while not self.done():
            try:
                conn = connect(self.cluster, self.via)
                ch = conn.channel()
                ch.confirm_delivery()
                self.connects += 1
            except Exception:
                time.sleep(0.5)
                continue
            try:
                while not self.done():
                    if again is None:
                        self.seq += 1
                        seq = self.seq
                    else:
                        seq, again = again, None
                    value = "%s:%d" % (self.p, seq)
                    headers = {}
                    if self.target == "delayed":
                        headers["x-delay"] = DELAY_MS
                    if self.target == "dedup":
                        headers["x-deduplication-header"] = value
                    props = pika.BasicProperties(delivery_mode=2, message_id=value, headers=headers or None)
                    sent = self.history.now()
                    self.history.record("invoke", q=queue, p=self.p, seq=seq, value=value, via=self.via)
                    outcome = "ack"
                    try:
                        ch.basic_publish(exchange, key, value.encode(), props)
                    except pika.exceptions.NackError:
                        outcome = "nack"
                    except Exception:
                        outcome = "error"
                    self.history.record("publish", sent=round(sent, 4), q=queue, p=self.p, seq=seq, value=value,
                                        via=self.via, outcome=outcome)
                    if outcome != "ack" and self.target == "dedup":
                        again = seq
                    if outcome == "error":
                        break
            finally:
                try:
                    conn.close()
                except Exception:
                    pass


class Consumer(threading.Thread):
    """Consumes `queue` via `via`, recording and acking each delivery."""

    def __init__(self, cluster, history, name, queue, via, stop, prefetch=100):
        super().__init__(name=name, daemon=True)
        self.cluster, self.history, self.c, self.queue, self.via, self.stop = cluster, history, name, queue, via, stop
        self.prefetch = prefetch

    def on_message(self, ch, method, props, body):
        count = (props.headers or {}).get("x-delivery-count")
        self.history.record("deliver", q=self.queue, value=body.decode(), redelivered=bool(method.redelivered),
                            count=count, via=self.via, consumer=self.c, drain=False)
        ch.basic_ack(method.delivery_tag)

    def run(self):
        while not self.stop.is_set():
            try:
                conn = connect(self.cluster, self.via)
                ch = conn.channel()
                ch.basic_qos(prefetch_count=self.prefetch)
                ch.basic_consume(self.queue, self.on_message)
            except Exception:
                time.sleep(0.5)
                continue
            try:
                while not self.stop.is_set():
                    conn.process_data_events(time_limit=0.5)
            except Exception:
                pass
            finally:
                try:
                    conn.close()
                except Exception:
                    pass


def start(cluster, history, rng, nodes):
    """Starts the publishers and consumers; returns (threads, stop event)."""
    stop = threading.Event()
    direct = rng.sample(nodes, 2)
    threads = [
        Publisher(cluster, history, "p1", "quorum", "haproxy", stop),
        Publisher(cluster, history, "p2", "quorum", "haproxy", stop),
        Publisher(cluster, history, "p3", "quorum", direct[0], stop),
        Publisher(cluster, history, "p4", "delayed", "haproxy", stop),
        Publisher(cluster, history, "p5", "dedup", "haproxy", stop),
        Consumer(cluster, history, "c1", QUORUM, "haproxy", stop),
        Consumer(cluster, history, "c2", QUORUM, direct[1], stop),
        Consumer(cluster, history, "c3", DELAYED_Q, "haproxy", stop),
        Consumer(cluster, history, "c4", DEDUP, "haproxy", stop),
    ]
    for t in threads:
        t.start()
    return threads, stop


def drain(cluster, history, nodes, within=120.0):
    """Empties every queue through every node (``basic.get`` until all say empty for
    ``QUIET`` seconds), then records each node's view of each queue's depth (waiting a little for the
    figures to settle at 0)."""
    queues = [QUORUM, DELAYED_Q, DEDUP]
    deadline = time.monotonic() + within
    # Delayed messages published last are held until due.
    time.sleep(DELAY_MS / 1000.0 + 1)
    last_activity = time.monotonic()
    while time.monotonic() - last_activity < QUIET and time.monotonic() < deadline:
        got = 0
        for node in nodes:
            try:
                conn = connect(cluster, node)
            except Exception:
                got += 1  # a node not answering yet: go round again
                continue
            try:
                ch = conn.channel()
                for q in queues:
                    while True:
                        method, props, body = ch.basic_get(q)
                        if method is None:
                            break
                        got += 1
                        count = (props.headers or {}).get("x-delivery-count")
                        history.record("deliver", q=q, value=body.decode(), redelivered=bool(method.redelivered),
                                       count=count, via=node, consumer="drain", drain=True)
                        ch.basic_ack(method.delivery_tag)
            except Exception:
                got += 1  # a node that failed mid-drain: go round again
            finally:
                try:
                    conn.close()
                except Exception:
                    pass
        if got:
            last_activity = time.monotonic()
        else:
            time.sleep(0.5)
    for q in queues:
        for node in nodes:
            messages = None
            settle = time.monotonic() + 10
            while time.monotonic() < settle:
                info = cluster.api_or_none("/api/queues/%%2F/%s" % q, via=node)
                messages = None if info is None else info.get("messages")
                if messages == 0:
                    break
                time.sleep(0.5)
            history.record("depth", q=q, via=node, messages=messages)
