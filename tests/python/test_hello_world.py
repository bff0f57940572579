"""Tutorial 1: a producer sends to a named queue via the default exchange."""
import pika

from conftest import uniq, consume_n


def test_send_and_receive_via_default_exchange(connect):
    q = uniq("hello")
    prod = connect()
    pch = prod.channel()
    ok = pch.queue_declare(q)
    assert ok.method.queue == q
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 0
    pch.basic_publish("", q, b"Hello World!")

    cons = connect()
    cch = cons.channel()
    got = consume_n(cons, cch, q, 1)
    assert [b for _, _, b in got] == [b"Hello World!"]
    m, props, body = got[0]
    assert m.routing_key == q
    assert m.exchange == ""
    assert m.redelivered is False
    assert m.delivery_tag == 1
    pch.queue_delete(q)


def test_queue_declare_is_idempotent_and_counts_messages(ch):
    q = uniq("hello")
    ch.queue_declare(q)
    ch.confirm_delivery()  # counts are only guaranteed once messages are confirmed
    for i in range(3):
        ch.basic_publish("", q, b"m%d" % i)
    ok = ch.queue_declare(q)
    assert ok.method.message_count == 3
    assert ok.method.consumer_count == 0
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.message_count == 3
    ch.queue_delete(q)


def test_publish_to_missing_queue_is_silently_dropped(ch):
    q = uniq("nobody")
    # default exchange, no such queue, not mandatory: dropped without error
    ch.basic_publish("", q, b"lost")
    other = uniq("hello")
    ch.queue_declare(other)
    assert ch.is_open
    r = ch.queue_declare(q)
    assert r.method.message_count == 0
    ch.queue_delete(q)
    ch.queue_delete(other)


def test_properties_and_headers_round_trip(ch):
    q = uniq("props")
    ch.queue_declare(q)
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8",
        headers={"str": "v", "int": 42, "neg": -7, "bool": True, "nested": {"a": "b"},
                 "list": [1, "two"]},
        delivery_mode=2, priority=5, correlation_id="cid-1", reply_to="rq",
        expiration="60000", message_id="mid-1", timestamp=1700000000,
        type="kind", user_id="guest", app_id="app")
    ch.basic_publish("", q, b'{"x":1}', props)
    m, p, body = ch.basic_get(q, auto_ack=True)
    assert body == b'{"x":1}'
    assert p.content_type == "application/json"
    assert p.content_encoding == "utf-8"
    assert p.headers["str"] == "v"
    assert p.headers["int"] == 42
    assert p.headers["neg"] == -7
    assert p.headers["bool"] is True
    assert p.headers["nested"] == {"a": "b"}
    assert p.headers["list"] == [1, "two"]
    assert p.delivery_mode == 2
    assert p.priority == 5
    assert p.correlation_id == "cid-1"
    assert p.reply_to == "rq"
    assert p.expiration == "60000"
    assert p.message_id == "mid-1"
    assert p.timestamp == 1700000000
    assert p.type == "kind"
    assert p.user_id == "guest"
    assert p.app_id == "app"
    ch.queue_delete(q)


def test_empty_and_large_bodies(ch, conn):
    q = uniq("sizes")
    ch.queue_declare(q)
    big = bytes(range(256)) * 4096 * 3  # 3 MiB: spans many body frames
    ch.basic_publish("", q, b"")
    ch.basic_publish("", q, big)
    m, p, body = ch.basic_get(q, auto_ack=True)
    assert body == b""
    m, p, body = ch.basic_get(q, auto_ack=True)
    assert len(body) == len(big)
    assert body == big
    ch.queue_delete(q)


def test_fifo_order_preserved(ch):
    q = uniq("order")
    ch.queue_declare(q)
    for i in range(100):
        ch.basic_publish("", q, str(i).encode())
    got = []
    for _ in range(100):
        m, p, b = ch.basic_get(q, auto_ack=True)
        got.append(int(b))
    assert got == list(range(100))
    m, p, b = ch.basic_get(q, auto_ack=True)
    assert m is None
    ch.queue_delete(q)
