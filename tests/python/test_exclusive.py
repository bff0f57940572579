"""Exclusive and auto-delete queues."""
import pika
import pytest

from conftest import uniq, drain, channel_error, wait_for, get_message

LOCKED = ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '/'. "
          "It could be originally declared on another connection or the exclusive property "
          "value does not match that of the original declaration.")


def _exists(conn, q):
    try:
        conn.channel().queue_declare(q, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404, e
        return False


@pytest.fixture
def exclusive_queue(connect):
    owner = connect()
    q = uniq("excl")
    owner.channel().queue_declare(q, exclusive=True)
    return owner, q


@pytest.mark.parametrize("op", ["declare", "declare-exclusive", "declare-passive", "consume",
                                "get", "purge", "delete", "bind"])
def test_exclusive_queue_locked_for_other_connections(connect, exclusive_queue, op):
    owner, q = exclusive_queue
    other = connect()
    ch = other.channel()
    fn = {
        "declare": lambda: ch.queue_declare(q),
        "declare-exclusive": lambda: ch.queue_declare(q, exclusive=True),
        "declare-passive": lambda: ch.queue_declare(q, passive=True),
        "consume": lambda: ch.basic_consume(q, lambda *a: None),
        "get": lambda: ch.basic_get(q),
        "purge": lambda: ch.queue_purge(q),
        "delete": lambda: ch.queue_delete(q),
        "bind": lambda: ch.queue_bind(q, "amq.direct", "k"),
    }[op]
    code, text = channel_error(fn)
    assert (code, text) == (405, LOCKED % q)
    assert other.is_open
    assert _exists(owner, q)  # untouched


def test_unbind_existing_binding_of_exclusive_queue_from_other_connection(connect, exclusive_queue):
    owner, q = exclusive_queue
    owner.channel().queue_bind(q, "amq.direct", q)
    other = connect()
    code, text = channel_error(other.channel().queue_unbind, q, "amq.direct", q)
    assert (code, text) == (405, LOCKED % q)


def test_other_connection_may_publish_to_exclusive_queue(connect, exclusive_queue):
    owner, q = exclusive_queue
    other = connect()
    ch = other.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"from outside", mandatory=True)
    assert drain(owner.channel(), q, expected=1) == [b"from outside"]


def test_owner_has_full_access_from_any_channel(exclusive_queue):
    owner, q = exclusive_queue
    ch = owner.channel()
    ok = ch.queue_declare(q, exclusive=True)
    assert ok.method.queue == q
    ch.queue_declare(q, passive=True)
    ch.basic_publish("", q, b"x")
    ch.queue_bind(q, "amq.direct", q)
    assert get_message(ch, q)[2] == b"x"


def test_exclusive_queue_survives_channel_close(connect, exclusive_queue):
    owner, q = exclusive_queue
    ch = owner.channel()
    ch.queue_declare(q, passive=True)
    ch.close()
    assert _exists(owner, q)


def test_exclusive_queue_deleted_when_owner_closes(connect, exclusive_queue):
    owner, q = exclusive_queue
    observer = connect()
    owner.close()
    assert wait_for(lambda: not _exists(observer, q), 5)
    # the name is free again: another connection can now declare it
    ok = observer.channel().queue_declare(q, exclusive=True)
    assert ok.method.queue == q


def test_exclusive_queue_bindings_removed_with_it(connect):
    owner = connect()
    x = uniq("x")
    owner.channel().exchange_declare(x, "fanout")
    q = owner.channel().queue_declare("", exclusive=True).method.queue
    owner.channel().queue_bind(q, x)
    owner.close()
    c = connect()
    ch = c.channel()
    ch.confirm_delivery()
    assert wait_for(lambda: not _exists(c, q), 5)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "", b"m", mandatory=True)
    ch.exchange_delete(x)


def test_auto_delete_queue_deleted_after_last_consumer_cancels(conn):
    ch = conn.channel()
    q = uniq("autodel")
    ch.queue_declare(q, auto_delete=True)
    t1 = ch.basic_consume(q, lambda *a: None)
    t2 = ch.basic_consume(q, lambda *a: None)
    ch.basic_cancel(t1)
    assert _exists(conn, q)                # one consumer left
    ch.basic_cancel(t2)
    assert wait_for(lambda: not _exists(conn, q), 5)


def test_auto_delete_queue_without_consumers_stays(conn):
    ch = conn.channel()
    q = uniq("autodel")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_publish("", q, b"x")
    assert get_message(ch, q)[2] == b"x"   # basic.get is not a consumer
    assert _exists(conn, q)
    ch.queue_delete(q)


def test_auto_delete_queue_deleted_when_consumer_channel_closes(connect):
    observer = connect()
    c = connect()
    ch = c.channel()
    q = uniq("autodel")
    ch.queue_declare(q, auto_delete=True)
    ch.basic_consume(q, lambda *a: None)
    ch.close()
    assert wait_for(lambda: not _exists(observer, q), 5)


def test_auto_delete_exchange_deleted_after_last_binding_removed(conn):
    ch = conn.channel()
    x = uniq("adx")
    ch.exchange_declare(x, "direct", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.exchange_declare(x, "direct", passive=True)  # no bindings yet: still there
    ch.queue_bind(q, x, "a")
    ch.queue_bind(q, x, "b")
    ch.queue_unbind(q, x, "a")
    ch.exchange_declare(x, "direct", passive=True)
    ch.queue_unbind(q, x, "b")
    code, text = channel_error(ch.exchange_declare, x, "direct", passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)
