"""Exchange-to-exchange bindings (exchange.bind / exchange.unbind)."""
import pika
import pytest

from conftest import uniq, drain, channel_error


@pytest.fixture
def xch(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    made = []

    def mk(typ, **kw):
        x = uniq("e2e-" + typ)
        ch.exchange_declare(x, typ, **kw)
        made.append(x)
        return x

    yield ch, mk
    c = conn.channel()
    for x in made:
        c.exchange_delete(x)


def test_exchange_to_exchange_routing(xch):
    ch, mk = xch
    src = mk("direct")
    dst = mk("fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, dst)
    ch.exchange_bind(destination=dst, source=src, routing_key="go")
    ch.basic_publish(src, "go", b"through", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(src, "stop", b"blocked", mandatory=True)
    m, p, b = ch.basic_get(q, auto_ack=True)
    assert b == b"through"
    assert m.exchange == src         # delivered with the exchange it was published to
    assert m.routing_key == "go"
    assert drain(ch, q) == []


def test_chain_of_exchanges_with_topic(xch):
    ch, mk = xch
    a = mk("fanout")
    b = mk("topic")
    c = mk("direct")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.exchange_bind(b, a)
    ch.exchange_bind(c, b, routing_key="logs.#")
    ch.queue_bind(q, c, routing_key="logs.error")
    ch.basic_publish(a, "logs.error", b"e", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(a, "logs.info", b"i", mandatory=True)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(a, "metrics", b"m", mandatory=True)
    assert drain(ch, q, expected=1) == [b"e"]


def test_cycle_delivers_once(xch):
    ch, mk = xch
    a = mk("fanout")
    b = mk("fanout")
    ch.exchange_bind(b, a)
    ch.exchange_bind(a, b)
    qa = ch.queue_declare("", exclusive=True).method.queue
    qb = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(qa, a)
    ch.queue_bind(qb, b)
    ch.basic_publish(a, "", b"loop")
    assert drain(ch, qa, expected=1) == [b"loop"]
    assert drain(ch, qb, expected=1) == [b"loop"]
    assert drain(ch, qa) == [] and drain(ch, qb) == []


def test_queue_reachable_by_two_paths_gets_one_copy(xch):
    ch, mk = xch
    src = mk("fanout")
    mid = mk("fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.exchange_bind(mid, src)
    ch.queue_bind(q, src)
    ch.queue_bind(q, mid)
    ch.basic_publish(src, "", b"one")
    assert drain(ch, q, expected=1) == [b"one"]
    assert drain(ch, q) == []


def test_exchange_unbind(xch):
    ch, mk = xch
    src = mk("direct")
    dst = mk("fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, dst)
    ch.exchange_bind(dst, src, routing_key="k")
    ch.basic_publish(src, "k", b"1", mandatory=True)
    ch.exchange_unbind(dst, src, routing_key="k")
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(src, "k", b"2", mandatory=True)
    assert drain(ch, q, expected=1) == [b"1"]
    # unbinding a binding that does not exist is fine
    ok = ch.exchange_unbind(dst, src, routing_key="never")
    assert ok.method.NAME == "Exchange.UnbindOk"


def test_deleting_destination_removes_binding(xch):
    ch, mk = xch
    src = mk("fanout")
    dst = mk("fanout")
    ch.exchange_bind(dst, src)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, dst)
    ch.exchange_delete(dst)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(src, "", b"x", mandatory=True)


def test_auto_delete_source_exchange_deleted_with_last_binding(xch):
    ch, mk = xch
    src = mk("fanout", auto_delete=True)
    dst = mk("fanout")
    ch.exchange_bind(dst, src)
    ch.exchange_unbind(dst, src)
    code, text = channel_error(ch.exchange_declare, src, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % src)


def test_bind_missing_exchanges(conn):
    ch = conn.channel()
    real = uniq("e2e")
    ch.exchange_declare(real, "fanout")
    missing = uniq("missing")
    expected = (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % missing)
    assert channel_error(conn.channel().exchange_bind, missing, real) == expected
    assert channel_error(conn.channel().exchange_bind, real, missing) == expected
    conn.channel().exchange_delete(real)


def test_bind_to_or_from_default_exchange_refused(conn):
    ch = conn.channel()
    x = uniq("e2e")
    ch.exchange_declare(x, "fanout")
    text = (403, "ACCESS_REFUSED - operation not permitted on the default exchange")
    assert channel_error(conn.channel().exchange_bind, "", x) == text
    assert channel_error(conn.channel().exchange_bind, x, "") == text
    conn.channel().exchange_delete(x)


def test_internal_exchange_as_destination(xch):
    ch, mk = xch
    src = mk("fanout")
    inner = mk("fanout", internal=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, inner)
    ch.exchange_bind(inner, src)
    ch.basic_publish(src, "", b"via internal")
    assert drain(ch, q, expected=1) == [b"via internal"]
