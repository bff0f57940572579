"""Tutorial 3: publish/subscribe with a fanout exchange."""
from conftest import uniq, drain


def test_fanout_delivers_to_every_bound_queue(ch):
    x = uniq("logs")
    ch.exchange_declare(x, "fanout")
    queues = []
    for _ in range(3):
        q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(q, x)
        queues.append(q)
    ch.confirm_delivery()
    ch.basic_publish(x, "ignored-key", b"info: hello")
    ch.basic_publish(x, "", b"info: again")
    for q in queues:
        assert drain(ch, q, expected=2) == [b"info: hello", b"info: again"]
    ch.exchange_delete(x)


def test_fanout_ignores_routing_and_binding_keys(ch):
    x = uniq("fan")
    ch.exchange_declare(x, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="only-this")
    ch.confirm_delivery()
    ch.basic_publish(x, "something-else", b"m")
    assert drain(ch, q, expected=1) == [b"m"]
    ch.exchange_delete(x)


def test_fanout_with_no_queues_drops_message(ch):
    x = uniq("fan")
    ch.exchange_declare(x, "fanout")
    ch.confirm_delivery()
    ch.basic_publish(x, "", b"nobody listens")  # confirmed, not returned (not mandatory)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    ch.basic_publish(x, "", b"second")
    assert drain(ch, q, expected=1) == [b"second"]
    assert drain(ch, q) == []
    ch.exchange_delete(x)


def test_binding_same_queue_twice_delivers_once(ch):
    x = uniq("fan")
    ch.exchange_declare(x, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="a")
    ch.queue_bind(q, x, routing_key="a")
    ch.queue_bind(q, x, routing_key="b")
    ch.confirm_delivery()
    ch.basic_publish(x, "", b"once")
    assert drain(ch, q, expected=1) == [b"once"]
    assert drain(ch, q) == []
    ch.exchange_delete(x)


def test_unbind_stops_delivery(ch):
    x = uniq("fan")
    ch.exchange_declare(x, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="k")
    ch.confirm_delivery()
    ch.basic_publish(x, "", b"1")
    ch.queue_unbind(q, x, routing_key="k")
    ch.basic_publish(x, "", b"2")
    assert drain(ch, q, expected=1) == [b"1"]
    assert drain(ch, q) == []
    ch.exchange_delete(x)


def test_amq_fanout_exists(ch):
    ok = ch.exchange_declare("amq.fanout", "fanout", passive=True)
    assert ok.method.NAME == "Exchange.DeclareOk"
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.fanout")
    ch.confirm_delivery()
    ch.basic_publish("amq.fanout", "", b"via amq.fanout")
    assert b"via amq.fanout" in drain(ch, q, expected=1)
