"""basic.ack / nack / reject / recover semantics."""
import pika
import pytest

from conftest import uniq, drain, channel_error, connection_error, wait_for, get_message


def _fill(conn, n, **declare):
    ch = conn.channel()
    q = uniq("ack")
    ch.queue_declare(q, **declare)
    ch.confirm_delivery()
    for i in range(n):
        ch.basic_publish("", q, b"%d" % i)
    return q


def _count(conn, q):
    return conn.channel().queue_declare(q, passive=True).method.message_count


def test_nack_requeue_sets_redelivered_and_keeps_position(conn):
    q = _fill(conn, 5)
    ch = conn.channel()
    m0 = get_message(ch, q, auto_ack=False)[0]
    m1 = get_message(ch, q, auto_ack=False)[0]
    m2 = get_message(ch, q, auto_ack=False)[0]
    assert [m0.delivery_tag, m1.delivery_tag, m2.delivery_tag] == [1, 2, 3]
    assert not (m0.redelivered or m1.redelivered or m2.redelivered)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    # message 1 goes back to its original position: ahead of 3 and 4
    m, p, body = get_message(ch, q, auto_ack=False)
    assert body == b"1" and m.redelivered is True and m.delivery_tag == 4
    ch.basic_reject(m0.delivery_tag, requeue=True)
    bodies = []
    flags = []
    for _ in range(3):
        m, p, body = get_message(ch, q, auto_ack=True)
        bodies.append(body)
        flags.append(m.redelivered)
    assert bodies == [b"0", b"3", b"4"]
    assert flags == [True, False, False]
    conn.channel().queue_delete(q)


def test_nack_multiple_requeues_all_in_order(conn):
    q = _fill(conn, 4)
    ch = conn.channel()
    msgs = [get_message(ch, q, auto_ack=False)[0] for _ in range(3)]
    ch.basic_nack(msgs[-1].delivery_tag, multiple=True, requeue=True)
    got = [get_message(ch, q, auto_ack=True) for _ in range(4)]
    assert [b for _, _, b in got] == [b"0", b"1", b"2", b"3"]
    assert [m.redelivered for m, _, _ in got] == [True, True, True, False]
    conn.channel().queue_delete(q)


def test_nack_and_reject_without_requeue_drop(conn):
    q = _fill(conn, 3)
    ch = conn.channel()
    a = get_message(ch, q, auto_ack=False)[0]
    b = get_message(ch, q, auto_ack=False)[0]
    ch.basic_reject(a.delivery_tag, requeue=False)
    ch.basic_nack(b.delivery_tag, requeue=False)
    ch.close()
    assert drain(conn.channel(), q) == [b"2"]
    conn.channel().queue_delete(q)


def test_reject_to_dead_letter_exchange(conn):
    ch = conn.channel()
    dlx = uniq("dlx")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    dead = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dead, dlx)
    q = uniq("src")
    ch.queue_declare(q, arguments={"x-dead-letter-exchange": dlx})
    ch.confirm_delivery()
    ch.basic_publish("", q, b"bad", pika.BasicProperties(headers={"orig": "h"}))
    m = get_message(ch, q, auto_ack=False)[0]
    ch.basic_nack(m.delivery_tag, requeue=False)
    m, p, body = get_message(ch, dead)
    assert body == b"bad"
    assert m.routing_key == q
    assert p.headers["orig"] == "h"
    [death] = p.headers["x-death"]
    assert death["reason"] == "rejected"
    assert death["queue"] == q
    assert death["exchange"] == ""
    assert death["routing-keys"] == [q]
    assert death["count"] == 1
    ch.queue_delete(q)


def test_ack_multiple(conn):
    q = _fill(conn, 5)
    ch = conn.channel()
    msgs = [get_message(ch, q, auto_ack=False)[0] for _ in range(4)]
    ch.basic_ack(msgs[2].delivery_tag, multiple=True)   # acks 1..3
    ch.close()                                          # 4th requeued
    c2 = conn.channel()
    got = [get_message(c2, q) for _ in range(2)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"3", True), (b"4", False)]
    c2.queue_delete(q)


def test_ack_zero_multiple_acks_everything(conn):
    q = _fill(conn, 3)
    ch = conn.channel()
    for _ in range(3):
        get_message(ch, q, auto_ack=False)
    ch.basic_ack(0, multiple=True)
    ch.close()
    assert _count(conn, q) == 0
    conn.channel().queue_delete(q)


def test_unknown_delivery_tag(conn):
    ch = conn.channel()
    def ack99():
        ch.basic_ack(99)
        ch.queue_declare("", exclusive=True)  # sync point
    code, text = channel_error(ack99)
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown delivery tag 99")
    assert conn.is_open


@pytest.mark.parametrize("op", ["ack", "nack", "reject"])
def test_double_settle_is_unknown_delivery_tag(conn, op):
    q = _fill(conn, 1)
    ch = conn.channel()
    m = get_message(ch, q, auto_ack=False)[0]
    ch.basic_ack(m.delivery_tag)
    def again():
        if op == "ack":
            ch.basic_ack(m.delivery_tag)
        elif op == "nack":
            ch.basic_nack(m.delivery_tag)
        else:
            ch.basic_reject(m.delivery_tag)
        ch.queue_declare("", exclusive=True)
    code, text = channel_error(again)
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")
    conn.channel().queue_delete(q)


def test_ack_of_auto_ack_delivery_is_unknown(conn):
    q = _fill(conn, 1)
    ch = conn.channel()
    m = get_message(ch, q, auto_ack=True)[0]
    def ack():
        ch.basic_ack(m.delivery_tag)
        ch.queue_declare("", exclusive=True)
    code, text = channel_error(ack)
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown delivery tag 1")
    conn.channel().queue_delete(q)


def test_delivery_tags_are_per_channel(conn):
    q = _fill(conn, 2)
    c1, c2 = conn.channel(), conn.channel()
    m1 = get_message(c1, q, auto_ack=False)[0]
    m2 = get_message(c2, q, auto_ack=False)[0]
    assert m1.delivery_tag == 1 and m2.delivery_tag == 1
    c2.basic_ack(1)
    c1.basic_ack(1)
    assert _count(conn, q) == 0
    conn.channel().queue_delete(q)


def test_recover_requeues_unacked(conn):
    q = _fill(conn, 2)
    ch = conn.channel()
    get_message(ch, q, auto_ack=False)
    get_message(ch, q, auto_ack=False)
    ch.basic_recover(requeue=True)  # synchronous: waits for basic.recover-ok
    got = [get_message(ch, q) for _ in range(2)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"0", True), (b"1", True)]
    conn.channel().queue_delete(q)


def test_recover_redelivers_to_consumer(conn):
    q = _fill(conn, 1)
    ch = conn.channel()
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append((b, m.redelivered, m.delivery_tag)))
    assert wait_for(lambda: len(seen) == 1, 5, conn=conn)
    ch.basic_recover(requeue=True)
    assert wait_for(lambda: len(seen) == 2, 5, conn=conn)
    assert seen == [(b"0", False, 1), (b"0", True, 2)]
    ch.basic_ack(2)
    conn.channel().queue_delete(q)


def test_recover_without_requeue_not_implemented(connect):
    c = connect()
    ch = c.channel()
    code, text = connection_error(ch.basic_recover, requeue=False)
    assert (code, text) == (540, "NOT_IMPLEMENTED - requeue=false")


def test_unacked_requeued_when_channel_closes(conn):
    q = _fill(conn, 3)
    ch = conn.channel()
    for _ in range(2):
        get_message(ch, q, auto_ack=False)
    assert _count(conn, q) == 1
    ch.close()
    assert wait_for(lambda: _count(conn, q) == 3, 5)
    got = [get_message(conn.channel(), q) for _ in range(3)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"0", True), (b"1", True), (b"2", False)]
    conn.channel().queue_delete(q)


def test_unacked_requeued_when_connection_closes(connect):
    admin = connect()
    q = _fill(admin, 2)
    other = connect()
    ch = other.channel()
    seen = []
    ch.basic_consume(q, lambda c, m, p, b: seen.append(b))
    assert wait_for(lambda: len(seen) == 2, 5, conn=other)
    assert _count(admin, q) == 0
    other.close()
    assert wait_for(lambda: _count(admin, q) == 2, 5)
    got = [get_message(admin.channel(), q) for _ in range(2)]
    assert [(b, m.redelivered) for m, _, b in got] == [(b"0", True), (b"1", True)]
    admin.channel().queue_delete(q)


def test_unacked_requeued_when_consumer_channel_errors(connect):
    admin = connect()
    q = _fill(admin, 1)
    c = connect()
    ch = c.channel()
    get_message(ch, q, auto_ack=False)
    channel_error(ch.queue_declare, uniq("missing"), passive=True)  # channel killed by broker
    assert wait_for(lambda: _count(admin, q) == 1, 5)
    m, p, b = get_message(admin.channel(), q)
    assert b == b"0" and m.redelivered
    admin.channel().queue_delete(q)
