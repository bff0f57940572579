"""Publisher confirms, mandatory returns, alternate exchanges, CC/BCC."""
import struct

import pika
import pytest

import amqp_raw as raw
from conftest import uniq, drain


def test_confirm_select_ok_and_publish_acked(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    for i in range(20):
        ch.basic_publish("", q, b"%d" % i)  # raises unless acked
    assert drain(ch, q, expected=20) == [b"%d" % i for i in range(20)]


def test_unroutable_non_mandatory_is_acked_not_returned(ch):
    x = uniq("x")
    ch.exchange_declare(x, "direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, "bound")
    ch.confirm_delivery()
    ch.basic_publish(x, "unbound", b"dropped")  # no exception: acked, silently dropped
    ch.basic_publish(x, "bound", b"kept")
    assert drain(ch, q, expected=1) == [b"kept"]


def test_mandatory_unroutable_returned_with_312(ch):
    x = uniq("x")
    ch.exchange_declare(x, "direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, "bound")
    ch.confirm_delivery()
    props = pika.BasicProperties(message_id="m-1", headers={"h": "v"})
    with pytest.raises(pika.exceptions.UnroutableError) as e:
        ch.basic_publish(x, "unbound", b"come back", props, mandatory=True)
    [ret] = e.value.messages
    assert ret.method.reply_code == 312
    assert ret.method.reply_text == "NO_ROUTE"
    assert ret.method.exchange == x
    assert ret.method.routing_key == "unbound"
    assert ret.body == b"come back"
    assert ret.properties.message_id == "m-1"
    assert ret.properties.headers == {"h": "v"}


def test_mandatory_to_default_exchange_missing_queue(ch):
    ch.confirm_delivery()
    q = uniq("noq")
    with pytest.raises(pika.exceptions.UnroutableError) as e:
        ch.basic_publish("", q, b"x", mandatory=True)
    [ret] = e.value.messages
    assert (ret.method.reply_code, ret.method.reply_text) == (312, "NO_ROUTE")
    assert ret.method.exchange == ""
    assert ret.method.routing_key == q


def test_mandatory_return_without_confirms(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, b)))
    x = uniq("x")
    ch.exchange_declare(x, "fanout")
    ch.basic_publish(x, "rk", b"r1", mandatory=True)
    ch.queue_declare("", exclusive=True)  # round trip; the return arrives before declare-ok
    conn.process_data_events(time_limit=0)
    assert [(m.reply_code, m.reply_text, m.routing_key, b) for m, b in returned] == [
        (312, "NO_ROUTE", "rk", b"r1")]
    ch.exchange_delete(x)


def test_return_precedes_confirm_on_the_wire(broker):
    """Raw frames: basic.return (+header+body) is sent before basic.ack for that publish."""
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.handshake(broker.user, broker.password, broker.vhost)
        c.open_channel(1)
        c.send_method(1, (85, 10), raw.octet(0))            # confirm.select
        c.expect((85, 11), channel=1)                       # confirm.select-ok
        rk = uniq("nowhere")
        for i in range(2):
            c.send_method(1, raw.BASIC_PUBLISH,
                          raw.short(0) + raw.shortstr("") + raw.shortstr(rk) + raw.octet(1))  # mandatory
            c.send(raw.header_frame(1, 5))
            c.send(raw.body_frame(1, b"hello"))
        seen = []
        for _ in range(2):
            m = c.read_method()
            assert m.cm == (60, 50), m                      # basic.return
            code = struct.unpack(">H", m.args[:2])[0]
            n = m.args[2]
            assert (code, m.args[3:3 + n]) == (312, b"NO_ROUTE")
            ftype, chan, payload = c.read_frame()
            assert (ftype, chan) == (raw.FRAME_HEADER, 1)
            assert struct.unpack(">Q", payload[4:12])[0] == 5
            ftype, chan, payload = c.read_frame()
            assert (ftype, chan, payload) == (raw.FRAME_BODY, 1, b"hello")
            ack = c.read_method()
            assert ack.cm == (60, 80), ack                  # basic.ack
            tag, multiple = struct.unpack(">QB", ack.args[:9])
            seen.append((tag, multiple))
        assert seen == [(1, 0), (2, 0)]
    finally:
        c.close()


def test_nack_when_queue_rejects_publish(ch):
    q = uniq("full")
    ch.queue_declare(q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"first")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"second")
    assert drain(ch, q, expected=1) == [b"first"]
    ch.queue_delete(q)


# ------------------------------------------------------------------ alternate exchange
def test_alternate_exchange_receives_unroutable(ch):
    ae = uniq("ae")
    x = uniq("main")
    ch.exchange_declare(ae, "fanout", auto_delete=True)
    ch.exchange_declare(x, "direct", auto_delete=True, arguments={"alternate-exchange": ae})
    routed = ch.queue_declare("", exclusive=True).method.queue
    unrouted = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(routed, x, "good")
    ch.queue_bind(unrouted, ae)
    ch.confirm_delivery()
    ch.basic_publish(x, "good", b"1", mandatory=True)
    ch.basic_publish(x, "bad", b"2", mandatory=True)  # routed via AE: not returned
    ch.basic_publish(x, "worse", b"3")
    assert drain(ch, routed, expected=1) == [b"1"]
    m, p, b = ch.basic_get(unrouted, auto_ack=True)
    assert b == b"2"
    assert m.exchange == x           # original exchange and key are kept
    assert m.routing_key == "bad"
    assert drain(ch, unrouted, expected=1) == [b"3"]


def test_missing_alternate_exchange_means_unroutable(ch):
    x = uniq("main")
    ch.exchange_declare(x, "direct", auto_delete=False, arguments={"alternate-exchange": uniq("missing")})
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as e:
        ch.basic_publish(x, "k", b"m", mandatory=True)
    assert e.value.messages[0].method.reply_code == 312
    ch.exchange_delete(x)


def test_alternate_exchange_chain_and_cycle(ch):
    a, b, c = uniq("ae-a"), uniq("ae-b"), uniq("ae-c")
    ch.exchange_declare(a, "direct", arguments={"alternate-exchange": b})
    ch.exchange_declare(b, "direct", arguments={"alternate-exchange": c})
    ch.exchange_declare(c, "direct", arguments={"alternate-exchange": a})  # cycle
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, c, "to-c")
    ch.confirm_delivery()
    ch.basic_publish(a, "to-c", b"hop", mandatory=True)   # a -> b -> c
    assert drain(ch, q, expected=1) == [b"hop"]
    with pytest.raises(pika.exceptions.UnroutableError):  # a -> b -> c -> (a): stops
        ch.basic_publish(a, "nowhere", b"loop", mandatory=True)
    for x in (a, b, c):
        ch.exchange_delete(x)


# ------------------------------------------------------------------ CC / BCC
def test_cc_and_bcc_headers(ch):
    x = uniq("ccx")
    ch.exchange_declare(x, "direct", auto_delete=True)
    qs = {}
    for k in ("main", "cc1", "cc2", "bcc1", "other"):
        qs[k] = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(qs[k], x, k)
    ch.confirm_delivery()
    ch.basic_publish(x, "main", b"m", pika.BasicProperties(
        headers={"CC": ["cc1", "cc2"], "BCC": ["bcc1"], "keep": "yes"}))
    for k in ("main", "cc1", "cc2", "bcc1"):
        m, p, body = ch.basic_get(qs[k], auto_ack=True)
        assert body == b"m", k
        assert m.routing_key == "main", k          # delivered with the original key
        assert p.headers.get("CC") == ["cc1", "cc2"], k
        assert "BCC" not in p.headers, k           # BCC is stripped
        assert p.headers["keep"] == "yes"
    assert drain(ch, qs["other"]) == []


def test_cc_only_and_deduplication(ch):
    x = uniq("ccx")
    ch.exchange_declare(x, "topic", auto_delete=True)
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q1, x, "a.*")
    ch.queue_bind(q2, x, "b.#")
    ch.confirm_delivery()
    # the routing key matches nothing, CC matches q2; q1 matched by both CC entries -> once
    ch.basic_publish(x, "zzz", b"m", pika.BasicProperties(headers={"CC": ["a.x", "a.y", "b"]}),
                     mandatory=True)
    assert drain(ch, q1, expected=1) == [b"m"]
    assert drain(ch, q1) == []
    assert drain(ch, q2, expected=1) == [b"m"]


def test_bcc_via_default_exchange(ch):
    q1 = ch.queue_declare("", exclusive=True).method.queue
    q2 = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q1, b"m", pika.BasicProperties(headers={"BCC": [q2]}))
    m, p, body = ch.basic_get(q2, auto_ack=True)
    assert body == b"m"
    assert m.routing_key == q1
    assert p.headers == {}
    assert drain(ch, q1, expected=1) == [b"m"]
