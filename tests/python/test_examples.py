"""The runnable examples in examples/ (the seed notes' working modes and reliability chapter),
each run as its users would run it: scripts in subprocesses, the broker's address in AMQP_URL.

In cluster mode every script gets the next node's address (broker.params() hands the nodes out
in turn), so producers, consumers and queues sit on different nodes. Every wait is bounded; a
failing assertion shows what each script printed."""
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import uniq

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def amqp_url(broker):
    """AMQP_URL for the next node in turn (the one broker in single-node mode)."""
    p = broker.params()
    quote = lambda s: urllib.parse.quote(s, safe="")  # noqa: E731
    return "amqp://%s:%s@%s:%d/%s" % (quote(broker.user), quote(broker.password), p.host, p.port,
                                      quote(broker.vhost))


class Script:
    """One example script running in a subprocess; stdout lines are collected as they come,
    with the time each was read."""

    def __init__(self, broker, path, *args):
        self.name = path
        env = dict(os.environ, AMQP_URL=amqp_url(broker), PYTHONUNBUFFERED="1")
        self.cmd = [sys.executable, str(EXAMPLES / path)] + [str(a) for a in args]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines = []  # (monotonic time, line)
        self.stderr = []
        self.cond = threading.Condition()
        pipes = ((self.proc.stdout, True), (self.proc.stderr, False))
        self.readers = [threading.Thread(target=self._read, args=pipe, daemon=True)
                        for pipe in pipes]
        for t in self.readers:
            t.start()

    def _read(self, pipe, is_stdout):
        for line in pipe:
            with self.cond:
                if is_stdout:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                else:
                    self.stderr.append(line.rstrip("\n"))
                self.cond.notify_all()

    @property
    def out(self):
        with self.cond:
            return [line for _, line in self.lines]

    def describe(self):
        return "%s (exit %s)\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            " ".join(self.cmd[1:]), self.proc.poll(), "\n".join(self.out),
            "\n".join(self.stderr[-30:]))

    def wait_line(self, pattern, timeout=30):
        """Waits for a stdout line matching the regex; returns the match."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, line in self.lines:
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not any(
                        t.is_alive() for t in self.readers)):
                    raise AssertionError("no line matching %r within %s s from %s"
                                         % (pattern, timeout, self.describe()))
                self.cond.wait(min(left, 0.2))

    def finish(self, timeout=30, status=0):
        """Waits for the script to end by itself and checks its exit status."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("still running after %s s: %s" % (timeout, self.describe()))
        for t in self.readers:
            t.join(5)
        assert self.proc.returncode == status, self.describe()
        return self

    def terminate(self):
        """SIGTERM: the examples' consumers stop on it as on Ctrl+C."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()  # by PID (Popen object)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def matches(self, pattern):
        return [m for m in (re.search(pattern, line) for line in self.out) if m]

    def times(self, pattern):
        with self.cond:
            return [t for t, line in self.lines if re.search(pattern, line)]


@pytest.fixture
def run(broker):
    """run(path, *args) -> Script; every script still running at the end is killed."""
    scripts = []

    def _run(path, *args):
        s = Script(broker, path, *args)
        scripts.append(s)
        return s

    yield _run
    for s in scripts:
        s.kill()


def wait_until(pred, timeout, what, scripts):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not within %s s\n%s" % (
                what, timeout, "\n".join(s.describe() for s in scripts)))
        time.sleep(0.05)


# --- the working modes ------------------------------------------------------------------------

def test_hello_world(run):
    q = uniq("hello")
    send = run("hello_world/send.py", "--queue", q, "--count", 3).finish()
    assert send.out == [" [x] Sent 'Hello World %d!'" % i for i in range(3)], send.describe()
    # The messages waited in the queue for a consumer that was not there yet.
    recv = run("hello_world/receive.py", "--queue", q, "--expect", 3, "--timeout", 20).finish()
    assert [m.group(1) for m in recv.matches(r"\[x\] Received '(.*)'")] == [
        "Hello World 0!", "Hello World 1!", "Hello World 2!"], recv.describe()
    assert recv.out[-1] == " [.] Received 3 message(s)", recv.describe()


HEAVY = "Task 0 " + "." * 25  # 2.5 s of work at 0.1 s per dot
TASKS = [HEAVY] + ["Task %d ." % i for i in range(1, 10)]  # nine light tasks of 0.1 s


def _work_queue_experiment(run, prefetch):
    """Two identical workers; one heavy task, then nine light ones. Returns {worker: [task
    numbers it did]}."""
    q = uniq("task_queue")
    workers = [run("work_queues/worker.py", "--queue", q, "--name", name, "--prefetch", prefetch,
                   "--seconds-per-dot", 0.1, "--timeout", 40) for name in ("w1", "w2")]
    for w in workers:
        w.wait_line(r"waiting for tasks")  # both consume before the first task is sent
    run("work_queues/new_task.py", "--queue", q, *TASKS).finish()
    done = r"\[x\] (w\d) done 'Task (\d+) "
    wait_until(lambda: sum(len(w.matches(done)) for w in workers) >= len(TASKS), 30,
               "all tasks done", workers)
    for w in workers:
        w.terminate()
    got = {}
    for w in workers:
        w.finish(10)
        assert w.out[-1].startswith(" [.] w"), w.describe()  # the summary after Ctrl+C/SIGTERM
        for m in w.matches(done):
            got.setdefault(m.group(1), []).append(int(m.group(2)))
    assert sorted(sum(got.values(), [])) == list(range(len(TASKS))), got  # each task once
    return got


def test_work_queues_round_robin_without_prefetch(run):
    got = _work_queue_experiment(run, 0)
    # Round robin: five tasks each, whatever they weigh -- the heavy task's worker also gets
    # every other light one, and does them only after the heavy one.
    heavy = next(w for w, tasks in got.items() if 0 in tasks)
    light = next(w for w in ("w1", "w2") if w != heavy)
    assert sorted(got[heavy]) == [0, 2, 4, 6, 8], got
    assert sorted(got[light]) == [1, 3, 5, 7, 9], got


def test_work_queues_fair_dispatch_with_prefetch_one(run):
    got = _work_queue_experiment(run, 1)
    # prefetch=1: while one worker is busy with the heavy task, the other takes the light ones.
    heavy = next(w for w, tasks in got.items() if 0 in tasks)
    light = next(w for w in ("w1", "w2") if w != heavy)
    assert len(got.get(light, [])) > len(got[heavy]), got
    assert len(got[heavy]) <= 3 and len(got.get(light, [])) >= 7, got


def test_publish_subscribe(run):
    x = uniq("logs")
    receivers = [run("publish_subscribe/receive_logs.py", "--exchange", x, "--expect", 4,
                     "--timeout", 20) for _ in range(2)]
    for r in receivers:
        r.wait_line(r"waiting for logs")
    logs = ["info: one", "warning: two", "error: three", "info: four"]
    run("publish_subscribe/emit_log.py", "--exchange", x, *logs).finish()
    for r in receivers:
        r.finish()
        # Every subscriber gets every log line, in order.
        assert [m.group(1) for m in r.matches(r"^ \[x\] (.*)$")] == logs, r.describe()
    # Each had its own queue.
    queues = {r.wait_line(r"Queue (\S+) waiting").group(1) for r in receivers}
    assert len(queues) == 2


def test_routing(run):
    x = uniq("direct_logs")
    bindings = {"disk": ["ERROR"], "screen": ["INFO", "WARN", "ERROR"]}
    sent = [("INFO", "a"), ("DEBUG", "b"), ("WARN", "c"), ("ERROR", "d"), ("INFO", "e"),
            ("TRACE", "f"), ("ERROR", "g")]
    # The last log is one both want: a log routed wrongly before it would be among the first
    # --expect ones a receiver gets (a queue is FIFO), so this checks "exactly".
    expected = {name: [(s, m) for s, m in sent if s in keys] for name, keys in bindings.items()}
    receivers = {name: run("routing/receive_logs_direct.py", "--exchange", x, *keys,
                           "--expect", len(expected[name]), "--timeout", 20)
                 for name, keys in bindings.items()}
    for r in receivers.values():
        r.wait_line(r"Waiting for")
    emit = run("routing/emit_log_direct.py", "--exchange", x, *sum(map(list, sent), [])).finish()
    assert len(emit.matches(r"\[x\] Sent")) == len(sent), emit.describe()
    for name, r in receivers.items():
        r.finish()
        got = [(m.group(1), m.group(2)) for m in r.matches(r"^ \[x\] (\w+):'(.*)'$")]
        assert got == expected[name], r.describe()


def test_topics(run):
    x = uniq("topic_logs")
    bindings = {"orange": ["*.orange.*"], "rabbit_lazy": ["*.*.rabbit", "lazy.#"], "all": ["#"]}
    keys = ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", "lazy.brown.fox",
            "lazy.pink.rabbit", "quick.brown.fox", "orange", "quick.orange.new.rabbit",
            "lazy.orange.male.rabbit", "lazy.orange.rabbit"]
    expected = {
        "orange": ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox",
                   "lazy.orange.rabbit"],
        # lazy.pink.rabbit and lazy.orange.rabbit match both bindings: still one copy each.
        "rabbit_lazy": ["quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox",
                        "lazy.pink.rabbit", "lazy.orange.male.rabbit", "lazy.orange.rabbit"],
        "all": keys,
    }
    receivers = {name: run("topics/receive_logs_topic.py", "--exchange", x, *patterns,
                           "--expect", len(expected[name]), "--timeout", 20)
                 for name, patterns in bindings.items()}
    for r in receivers.values():
        r.wait_line(r"Waiting for")
    pairs = sum([[k, "msg %d" % i] for i, k in enumerate(keys)], [])
    run("topics/emit_log_topic.py", "--exchange", x, *pairs).finish()
    for name, r in receivers.items():
        r.finish()
        got = [m.group(1) for m in r.matches(r"^ \[x\] ([\w.]+):'msg \d+'$")]
        assert got == expected[name], r.describe()


def test_rpc(run):
    q = uniq("rpc_queue")
    server = run("rpc/rpc_server.py", "--queue", q, "--expect", 4, "--timeout", 30)
    server.wait_line(r"Awaiting RPC requests")
    # Two clients at once, each with its own reply queue.
    a = run("rpc/rpc_client.py", "--queue", q, "--timeout", 20, 10, 20)
    b = run("rpc/rpc_client.py", "--queue", q, "--timeout", 20, 1, 25)
    answers = {}
    for c in (a, b):
        c.finish()
        answers.update({int(m.group(1)): int(m.group(2))
                        for m in c.matches(r"Got fib\((\d+)\) = (\d+)")})
    assert answers == {10: 55, 20: 6765, 1: 1, 25: 75025}, (a.describe(), b.describe())
    server.finish()
    served = sorted(int(m.group(1)) for m in server.matches(r"\[\.\] fib\((\d+)\)"))
    assert served == [1, 10, 20, 25], server.describe()


# --- the reliability chapter ------------------------------------------------------------------

@pytest.mark.warren  # the delayed exchange: RabbitMQ needs the delayed-message plugin
def test_message_compensation(run, tmp_path):
    prefix = uniq("shop")
    db = tmp_path / "processed.sqlite3"
    delay = 1.5
    orders = ["order-%d" % i for i in range(1, 6)]
    lost = ["order-2", "order-4"]
    consumer = run("compensation/consumer.py", "--prefix", prefix, "--db", db,
                   *sum([["--lose", o] for o in lost], []), "--expect", len(orders),
                   "--timeout", 20)
    checker = run("compensation/checker.py", "--prefix", prefix, "--db", db,
                  "--check-delay", delay, "--expect", len(orders), "--timeout", 20)
    consumer.wait_line(r"Waiting for orders")
    checker.wait_line(r"Waiting for check events")
    service = run("compensation/order_service.py", "--prefix", prefix, "--orders", len(orders),
                  "--check-delay", delay)
    placed_at = service.started
    service.finish()
    assert len(service.matches(r"\[x\] Placed order-\d+")) == len(orders), service.describe()
    checker.finish(30)
    consumer.finish(10)
    everything = consumer.describe() + "\n" + checker.describe()

    # The consumer lost two orders on purpose...
    assert sorted(m.group(1) for m in consumer.matches(r"Lost (order-\d+)")) == lost, everything
    # ...the checker found them unprocessed once their check was due, and sent them again...
    resent = {m.group(1) for m in checker.matches(r"(order-\d+) was never processed \(check 1\)")}
    assert sorted(resent) == lost, everything
    # (not before the check was due: the delayed exchange held the check events)
    held = min(checker.times(r"was never processed")) - placed_at
    assert delay - 0.1 <= held < delay + 10, (held, everything)
    # ...and every order was processed exactly once, and found processed by a check.
    processed = [m.group(1) for m in consumer.matches(r"Processed (order-\d+)$")]
    assert sorted(processed) == orders, everything
    assert not consumer.matches(r"duplicate"), everything
    ok = [m.group(1) for m in checker.matches(r"\[ok\] (order-\d+) was processed")]
    assert sorted(ok) == orders, everything
    second = [m.group(1) for m in checker.matches(r"(order-\d+) was processed \(check 2\)")]
    assert sorted(second) == lost, everything
    with sqlite3.connect(str(db)) as c:
        rows = c.execute("SELECT order_id, body FROM processed ORDER BY order_id").fetchall()
    assert [r[0] for r in rows] == orders
    assert all(json.loads(body)["order_id"] == oid for oid, body in rows)


def test_idempotent_consumer(run, tmp_path):
    q = uniq("stock-updates")
    db = tmp_path / "stock.sqlite3"
    producer = run("idempotent/producer.py", "--queue", q).finish()
    assert producer.out[-1] == " [.] Sent 8 update(s)", producer.describe()
    consumer = run("idempotent/consumer.py", "--queue", q, "--db", db, "--expect", 8,
                   "--timeout", 20).finish()
    outcome = [(m.group(1), m.group(2)) for m in consumer.matches(r"\[.\] (\w+) (upd-\d+)")]
    assert outcome == [("Applied", "upd-1"), ("Applied", "upd-2"), ("Duplicate", "upd-2"),
                       ("Applied", "upd-3"), ("Applied", "upd-5"), ("Stale", "upd-4"),
                       ("Duplicate", "upd-3"), ("Applied", "upd-6")], consumer.describe()
    final = [" [.] Stock of apple: 3 (version 4)", " [.] Stock of pear: 4 (version 2)"]
    assert consumer.out[-2:] == final, consumer.describe()

    # The same messages once more (a replay): every one is a duplicate, nothing changes.
    run("idempotent/producer.py", "--queue", q).finish()
    again = run("idempotent/consumer.py", "--queue", q, "--db", db, "--expect", 8,
                "--timeout", 20).finish()
    assert len(again.matches(r"\[=\] Duplicate upd-\d+ skipped")) == 8, again.describe()
    assert again.out[-2:] == final, again.describe()
    with sqlite3.connect(str(db)) as c:
        assert c.execute("SELECT sku, stock, version FROM stock ORDER BY sku").fetchall() == [
            ("apple", 3, 4), ("pear", 4, 2)]
        assert c.execute("SELECT count(*) FROM handled_messages").fetchone()[0] == 6
