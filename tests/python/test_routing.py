"""Tutorial 4: routing with a direct exchange."""
import pytest

from conftest import uniq, drain


@pytest.fixture
def direct(ch):
    x = uniq("direct_logs")
    ch.exchange_declare(x, "direct")
    ch.confirm_delivery()
    yield x
    ch.exchange_delete(x)


def test_direct_routes_by_exact_key(ch, direct):
    errors = ch.queue_declare("", exclusive=True).method.queue
    everything = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(errors, direct, routing_key="error")
    for sev in ("info", "warning", "error"):
        ch.queue_bind(everything, direct, routing_key=sev)
    for sev in ("info", "warning", "error", "debug"):
        ch.basic_publish(direct, sev, sev.encode())
    assert drain(ch, errors, expected=1) == [b"error"]
    assert drain(ch, errors) == []
    assert drain(ch, everything, expected=3) == [b"info", b"warning", b"error"]
    assert drain(ch, everything) == []


def test_multiple_bindings_same_key(ch, direct):
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q1, direct, routing_key="black")
    ch.queue_bind(q2, direct, routing_key="black")
    ch.basic_publish(direct, "black", b"b")
    assert drain(ch, q1, expected=1) == [b"b"]
    assert drain(ch, q2, expected=1) == [b"b"]


def test_direct_key_is_case_sensitive_and_exact(ch, direct):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, direct, routing_key="Key")
    for k in ("key", "KEY", "Key ", "Key.x", "Ke", "Key"):
        ch.basic_publish(direct, k, k.encode())
    assert drain(ch, q, expected=1) == [b"Key"]
    assert drain(ch, q) == []


def test_empty_routing_key_binding(ch, direct):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, direct, routing_key="")
    ch.basic_publish(direct, "", b"empty")
    ch.basic_publish(direct, "x", b"x")
    assert drain(ch, q, expected=1) == [b"empty"]
    assert drain(ch, q) == []


def test_default_exchange_routes_to_queue_by_name(ch):
    q = uniq("dflt")
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"direct to queue")
    assert drain(ch, q, expected=1) == [b"direct to queue"]
    ch.queue_delete(q)


def test_amq_direct_exists(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.direct", routing_key=q)
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", q, b"hi")
    assert drain(ch, q, expected=1) == [b"hi"]
