"""Tutorial 2: work queues -- round-robin dispatch, acks, prefetch (fair dispatch)."""
import threading
import time

import pika

from conftest import uniq, wait_for, get_message, Thread


def _dispatch_experiment(broker, connect, prefetch=None, auto_ack=False, n=10, slow=0.3):
    """Two consumers, each on its own connection/thread, on one queue.
    c1 sleeps `slow` seconds per message before acking, c2 acks immediately.
    Returns {"c1": [bodies], "c2": [bodies]}."""
    q = uniq("work")
    main = connect()
    mch = main.channel()
    mch.queue_declare(q)
    got = {"c1": [], "c2": []}
    lock = threading.Lock()
    done = threading.Event()
    stop = threading.Event()
    ready = {"c1": threading.Event(), "c2": threading.Event()}

    def consumer(name, delay):
        c = broker.connect()
        try:
            ch = c.channel()
            if prefetch is not None:
                ch.basic_qos(prefetch_count=prefetch)

            def on_msg(chan, method, props, body):
                if delay:
                    time.sleep(delay)
                if not auto_ack:
                    chan.basic_ack(method.delivery_tag)
                with lock:
                    got[name].append(body)
                    if len(got["c1"]) + len(got["c2"]) >= n:
                        done.set()

            ch.basic_consume(q, on_msg, auto_ack=auto_ack)
            ready[name].set()
            deadline = time.monotonic() + 15
            while not stop.is_set() and time.monotonic() < deadline:
                c.process_data_events(time_limit=0.05)
        finally:
            c.close()

    t1 = Thread(consumer, "c1", slow)
    t1.start()
    assert ready["c1"].wait(5)
    t2 = Thread(consumer, "c2", 0)
    t2.start()
    assert ready["c2"].wait(5)
    # both consumers must be registered before anything is published
    assert wait_for(lambda: mch.queue_declare(q, passive=True).method.consumer_count == 2, 5)
    for i in range(n):
        mch.basic_publish("", q, b"task-%d" % i)
    finished = done.wait(9)
    stop.set()
    t1.join(10)
    t2.join(10)
    mch.queue_delete(q)
    assert finished, "not all messages consumed: %r" % got
    return got


def test_round_robin_without_prefetch(broker, connect):
    got = _dispatch_experiment(broker, connect, prefetch=None)
    assert len(got["c1"]) == 5
    assert len(got["c2"]) == 5
    assert sorted(got["c1"] + got["c2"]) == sorted(b"task-%d" % i for i in range(10))


def test_fair_dispatch_with_prefetch_one(broker, connect):
    got = _dispatch_experiment(broker, connect, prefetch=1)
    assert len(got["c1"]) <= 2, got
    assert len(got["c2"]) >= 8, got
    assert len(got["c1"]) + len(got["c2"]) == 10


def test_round_robin_with_auto_ack(broker, connect):
    got = _dispatch_experiment(broker, connect, prefetch=1, auto_ack=True)
    # prefetch does not apply to auto-ack consumers: plain round robin
    assert len(got["c1"]) == 5
    assert len(got["c2"]) == 5


def test_round_robin_order_between_two_consumers(ch, conn):
    """With two consumers on one channel, messages alternate strictly."""
    q = uniq("rr")
    ch.queue_declare(q)
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append((m.consumer_tag, b)), auto_ack=True,
                     consumer_tag="A")
    ch.basic_consume(q, lambda c, m, p, b: seen.append((m.consumer_tag, b)), auto_ack=True,
                     consumer_tag="B")
    for i in range(6):
        ch.basic_publish("", q, b"%d" % i)
    assert wait_for(lambda: len(seen) == 6, 5, conn=conn)
    tags = [t for t, _ in seen]
    assert sorted(tags) == ["A", "A", "A", "B", "B", "B"]
    assert all(tags[i] != tags[i + 1] for i in range(5)), tags
    assert [b for _, b in seen] == [b"%d" % i for i in range(6)]
    ch.queue_delete(q)


def test_unacked_message_is_redelivered_to_other_worker_when_worker_dies(connect):
    q = uniq("work")
    w1 = connect()
    c1 = w1.channel()
    c1.queue_declare(q, durable=True)
    c1.basic_publish("", q, b"task", pika.BasicProperties(delivery_mode=2))
    m, p, body = c1.basic_get(q, auto_ack=False)
    assert body == b"task" and m.redelivered is False
    w1.close()  # dies without acking

    w2 = connect()
    c2 = w2.channel()
    method, props, body = get_message(c2, q)
    assert body == b"task"
    assert method.redelivered is True
    assert props.delivery_mode == 2
    c2.queue_delete(q)


def test_prefetch_limits_unacked_deliveries(ch, conn):
    q = uniq("qos")
    ch.queue_declare(q)
    ch.basic_qos(prefetch_count=3)
    for i in range(10):
        ch.basic_publish("", q, b"%d" % i)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(m), auto_ack=False)
    wait_for(lambda: len(got) >= 3, 5, conn=conn)
    conn.process_data_events(time_limit=0.3)  # give the broker a chance to over-deliver
    assert len(got) == 3
    ch.basic_ack(got[1].delivery_tag)
    assert wait_for(lambda: len(got) == 4, 5, conn=conn)
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 4
    ch.basic_ack(got[3].delivery_tag, multiple=True)  # acks 1,3,4 (2 already acked)
    assert wait_for(lambda: len(got) == 7, 5, conn=conn)
    conn.process_data_events(time_limit=0.3)
    assert len(got) == 7
    ch.queue_delete(q)
