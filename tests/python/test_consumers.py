"""Consumers: tags, exclusive consume, cancel notifications, priorities,
single active consumer, basic.get."""
import re

import pytest

import amqp_raw as raw
from conftest import uniq, channel_error, connection_error, wait_for, get_message


def test_server_generated_consumer_tag(broker, ch):
    q = ch.queue_declare("", exclusive=False, auto_delete=False).method.queue
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.handshake(broker.user, broker.password, broker.vhost)
        c.open_channel(1)
        tags = []
        for _ in range(2):
            c.send_method(1, (60, 20), raw.short(0) + raw.shortstr(q) + raw.shortstr("")
                          + raw.octet(0) + raw.table())
            ok = c.expect((60, 21), channel=1)          # basic.consume-ok
            tags.append(ok.args[1:1 + ok.args[0]].decode())
        for t in tags:
            assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", t), t
        assert tags[0] != tags[1]
        # cancel echoes the tag
        c.send_method(1, (60, 30), raw.shortstr(tags[0]) + raw.octet(0))
        ok = c.expect((60, 31), channel=1)
        assert ok.args[1:1 + ok.args[0]].decode() == tags[0]
    finally:
        c.close()
    ch.queue_delete(q)


def test_client_consumer_tag_is_echoed(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(m.consumer_tag), consumer_tag="my-tag")
    assert tag == "my-tag"
    ch.basic_publish("", q, b"x")
    assert wait_for(lambda: got == ["my-tag"], 5, conn=conn)


def test_reusing_consumer_tag_on_channel_is_connection_error(broker, witness_q):
    q = witness_q
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.handshake(broker.user, broker.password, broker.vhost)
        c.open_channel(1)
        consume = raw.short(0) + raw.shortstr(q) + raw.shortstr("dup") + raw.octet(0) + raw.table()
        c.send_method(1, (60, 20), consume)
        c.expect((60, 21), channel=1)
        c.send_method(1, (60, 20), consume)
        assert c.expect_connection_close() == (
            530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'", 60, 20)
    finally:
        c.close()


@pytest.fixture
def witness_q(conn):
    ch = conn.channel()
    q = uniq("q")
    ch.queue_declare(q)
    yield q
    conn.channel().queue_delete(q)


def test_same_consumer_tag_on_different_channels_is_fine(conn):
    q = conn.channel().queue_declare("", exclusive=True).method.queue
    assert conn.channel().basic_consume(q, lambda *a: None, consumer_tag="same") == "same"
    assert conn.channel().basic_consume(q, lambda *a: None, consumer_tag="same") == "same"


def test_exclusive_consumer_blocks_others(connect):
    c1 = connect()
    ch1 = c1.channel()
    q = uniq("exclcons")
    ch1.queue_declare(q)
    ch1.basic_consume(q, lambda *a: None, exclusive=True)
    c2 = connect()
    text = "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q
    assert channel_error(c2.channel().basic_consume, q, lambda *a: None) == (403, text)
    assert channel_error(c2.channel().basic_consume, q, lambda *a: None, exclusive=True) == (403, text)
    # same channel too
    ch_same = c1.channel()
    assert channel_error(ch_same.basic_consume, q, lambda *a: None) == (403, text)
    # basic.get is still allowed
    assert c2.channel().basic_get(q)[0] is None
    ch1.close()
    # after the exclusive consumer is gone, others may consume
    c2.channel().basic_consume(q, lambda *a: None)
    c1.channel().queue_delete(q)


def test_exclusive_consume_on_queue_with_consumers_refused(connect):
    c1 = connect()
    q = uniq("exclcons")
    c1.channel().queue_declare(q)
    c1.channel().basic_consume(q, lambda *a: None)
    c2 = connect()
    code, text = channel_error(c2.channel().basic_consume, q, lambda *a: None, exclusive=True)
    assert (code, text) == (403, "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use" % q)
    c1.channel().queue_delete(q)


def test_consumer_cancel_notification_on_queue_delete(connect):
    c = connect()
    ch = c.channel()
    q = uniq("cancelme")
    ch.queue_declare(q)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(q, lambda *a: None)
    other = connect()
    other.channel().queue_delete(q)
    assert wait_for(lambda: cancelled == [tag], 5, conn=c)
    assert ch.is_open
    assert c.is_open


def test_consumer_cancel_notification_raw(broker, connect):
    """The broker sends basic.cancel(consumer_tag, nowait=1) to a client that
    advertised the consumer_cancel_notify capability."""
    admin = connect()
    q = uniq("cancelraw")
    admin.channel().queue_declare(q)
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.handshake(broker.user, broker.password, broker.vhost)
        c.open_channel(1)
        c.send_method(1, (60, 20), raw.short(0) + raw.shortstr(q) + raw.shortstr("ct-1")
                      + raw.octet(0) + raw.table())
        c.expect((60, 21), channel=1)
        admin.channel().queue_delete(q)
        m = c.expect((60, 30), channel=1)                # basic.cancel from server
        assert m.args == raw.shortstr("ct-1") + raw.octet(1)  # nowait=true: no cancel-ok expected
    finally:
        c.close()


def test_cancel_unknown_consumer_tag_is_ok(conn):
    ch = conn.channel()
    ch.basic_cancel("never-existed")
    assert ch.is_open
    ch.queue_declare("", exclusive=True)


def test_cancel_stops_delivery(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = []
    tag = ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"1")
    assert wait_for(lambda: got == [b"1"], 5, conn=conn)
    ch.basic_cancel(tag)
    ch.basic_publish("", q, b"2")
    assert get_message(ch, q)[2] == b"2"
    assert got == [b"1"]


def test_consumer_priorities(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    got = {"low": [], "high": []}
    ch.basic_consume(q, lambda c, m, p, b: got["low"].append(b), auto_ack=True,
                     arguments={"x-priority": 1})
    ch.basic_consume(q, lambda c, m, p, b: got["high"].append(b), auto_ack=True,
                     arguments={"x-priority": 10})
    for i in range(10):
        ch.basic_publish("", q, b"%d" % i)
    assert wait_for(lambda: len(got["low"]) + len(got["high"]) == 10, 5, conn=conn)
    assert len(got["high"]) == 10 and got["low"] == []


def test_consumer_priority_falls_back_when_high_is_blocked(connect):
    c = connect()
    q = uniq("prio")
    admin = c.channel()
    admin.queue_declare(q)
    high = c.channel()
    high.basic_qos(prefetch_count=2)
    hgot, lgot = [], []
    high.basic_consume(q, lambda ch, m, p, b: hgot.append(m), arguments={"x-priority": 5})
    low = c.channel()
    low.basic_consume(q, lambda ch, m, p, b: lgot.append(b), auto_ack=True)
    for i in range(6):
        admin.basic_publish("", q, b"%d" % i)
    assert wait_for(lambda: len(hgot) + len(lgot) == 6, 5, conn=c)
    # the high-priority consumer gets what its prefetch allows, the rest overflow
    assert [m.delivery_tag for m in hgot] == [1, 2]
    assert len(lgot) == 4
    admin.queue_delete(q)


def test_single_active_consumer(connect):
    c = connect()
    admin = c.channel()
    q = uniq("sac")
    admin.queue_declare(q, arguments={"x-single-active-consumer": True})
    got = {"a": [], "b": []}
    cha, chb = c.channel(), c.channel()
    ta = cha.basic_consume(q, lambda ch, m, p, b: got["a"].append(b), auto_ack=True)
    chb.basic_consume(q, lambda ch, m, p, b: got["b"].append(b), auto_ack=True)
    assert admin.queue_declare(q, passive=True).method.consumer_count == 2
    for i in range(4):
        admin.basic_publish("", q, b"%d" % i)
    assert wait_for(lambda: len(got["a"]) == 4, 5, conn=c)
    assert got["b"] == []
    cha.basic_cancel(ta)   # b becomes the active consumer
    for i in range(4, 6):
        admin.basic_publish("", q, b"%d" % i)
    assert wait_for(lambda: len(got["b"]) == 2, 5, conn=c)
    assert got == {"a": [b"0", b"1", b"2", b"3"], "b": [b"4", b"5"]}
    admin.queue_delete(q)


def test_single_active_consumer_argument_must_be_bool(conn):
    q = uniq("sac")
    code, text = channel_error(conn.channel().queue_declare, q,
                               arguments={"x-single-active-consumer": "yes"})
    assert (code, text) == (406, "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' "
                                 "for queue '%s' in vhost '/': {unacceptable_type,longstr}" % q)


def test_basic_get_message_count_and_get_empty(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
    counts = []
    for i in range(3):
        m, p, b = ch.basic_get(q, auto_ack=False)
        assert b == b"%d" % i
        counts.append(m.message_count)
        assert m.delivery_tag == i + 1
        assert m.redelivered is False
        assert m.exchange == "" and m.routing_key == q
    assert counts == [2, 1, 0]
    assert ch.basic_get(q) == (None, None, None)      # basic.get-empty
    ch.basic_ack(3, multiple=True)


def test_get_empty_raw(broker, ch):
    q = ch.queue_declare("", exclusive=False).method.queue
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.handshake(broker.user, broker.password, broker.vhost)
        c.open_channel(1)
        c.send_method(1, (60, 70), raw.short(0) + raw.shortstr(q) + raw.octet(1))
        m = c.expect((60, 72), channel=1)                 # basic.get-empty
        assert m.args == raw.shortstr("")                 # reserved cluster-id
    finally:
        c.close()
    ch.queue_delete(q)


def test_qos_prefetch_size_not_implemented(connect):
    c = connect()
    code, text = connection_error(c.channel().basic_qos, prefetch_size=1000)
    assert (code, text) == (540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)")


def test_consumer_count_in_declare_ok(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    for i in range(3):
        conn.channel().basic_consume(q, lambda *a: None)
    assert ch.queue_declare(q, passive=True).method.consumer_count == 3
