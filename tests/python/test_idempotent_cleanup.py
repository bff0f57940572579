"""Cleanup code that runs after the broker already cleaned up (issue 11).

Checked against RabbitMQ 3.10.8 first:

* ``queue.unbind`` and ``exchange.unbind`` answer ``unbind-ok`` when the
  binding, the queue, the exchange, the source or the destination is gone
  (cleanup after an auto-delete queue or exchange went away); unbinding from
  the default exchange stays 403;
* a client ``channel.close`` that crosses the server's ``channel.close`` is
  answered with ``close-ok``, and the client's late ``close-ok`` for the
  server's close is ignored: the connection and its other channels live on;
* management listing routes answer the same with a trailing slash.
"""
import time

import pika
import pytest

import amqp_raw as raw
from amqp_raw import shortstr, short, octet, table
from conftest import uniq, get_message, wait_for
from mgmt import q

# ---------------------------------------------------------------- queue.unbind

def test_unbind_a_binding_that_never_existed(ch):
    qn = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_unbind(qn, "amq.direct", routing_key="never-bound")
    # the channel is still usable and the queue still there
    ch.queue_declare(qn, passive=True)


def test_unbind_twice(ch):
    qn = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(qn, "amq.direct", routing_key="k")
    ch.queue_unbind(qn, "amq.direct", routing_key="k")
    ch.queue_unbind(qn, "amq.direct", routing_key="k")
    ch.basic_publish("amq.direct", "k", b"unrouted")
    ch.basic_publish("", qn, b"direct")
    assert get_message(ch, qn)[2] == b"direct"


def test_unbind_a_missing_queue(ch):
    ch.queue_unbind(uniq("no-such-queue"), "amq.direct", routing_key="k")
    ch.queue_declare("", exclusive=True)


def test_unbind_from_a_missing_exchange(ch):
    qn = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_unbind(qn, uniq("no-such-exchange"), routing_key="k")
    ch.queue_declare(qn, passive=True)


def test_unbind_missing_queue_from_missing_exchange(ch):
    ch.queue_unbind(uniq("no-such-queue"), uniq("no-such-exchange"), routing_key="k")
    ch.queue_declare("", exclusive=True)


def test_unbind_after_the_auto_delete_queue_went_away(conn, ch):
    """The common case: a consumer's auto-delete queue is deleted when it cancels,
    and cleanup code unbinds it afterwards."""
    ex = uniq("ex-cleanup")
    ch.exchange_declare(ex, "topic", auto_delete=True)
    qn = uniq("q-cleanup")
    ch.queue_declare(qn, auto_delete=True)
    ch.queue_bind(qn, ex, routing_key="a.#")
    tag = ch.basic_consume(qn, lambda *a: None)
    ch.basic_cancel(tag)
    # The queue goes (auto-delete), and with it the last binding of the auto-delete
    # exchange, so the exchange goes too. Both brokers do this just after cancel-ok
    # (RabbitMQ's queue process replies, then stops), so wait for it.
    assert wait_for(lambda: gone(conn, "queue_declare", qn)), "auto-delete queue still there"
    assert wait_for(lambda: gone(conn, "exchange_declare", ex)), "auto-delete exchange still there"
    ch.queue_unbind(qn, ex, routing_key="a.#")


def gone(conn, declare, name):
    """Whether a passive declare of `name` answers 404 (on a channel of its own)."""
    c = conn.channel()
    try:
        getattr(c, declare)(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404, e
        return True
    c.close()
    return False


def test_unbind_from_the_default_exchange_is_still_refused(ch):
    qn = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_unbind(qn, "", routing_key=qn)
    assert e.value.reply_code == 403
    assert "default exchange" in e.value.reply_text


# ------------------------------------------------------------- exchange.unbind

def test_exchange_unbind_a_binding_that_never_existed(ch):
    src, dst = uniq("src"), uniq("dst")
    ch.exchange_declare(src, "fanout", auto_delete=False)
    ch.exchange_declare(dst, "fanout", auto_delete=False)
    try:
        ch.exchange_unbind(dst, src, routing_key="")
        ch.exchange_bind(dst, src, routing_key="")
        ch.exchange_unbind(dst, src, routing_key="")
        ch.exchange_unbind(dst, src, routing_key="")
    finally:
        ch.exchange_delete(src)
        ch.exchange_delete(dst)


@pytest.mark.parametrize("missing", ["source", "destination", "both"])
def test_exchange_unbind_with_a_missing_end(ch, missing):
    existing = uniq("ex-present")
    ch.exchange_declare(existing, "fanout")
    try:
        src = uniq("ex-gone") if missing in ("source", "both") else existing
        dst = uniq("ex-gone") if missing in ("destination", "both") else existing
        ch.exchange_unbind(destination=dst, source=src, routing_key="")
        ch.exchange_declare(existing, "fanout", passive=True)
    finally:
        ch.exchange_delete(existing)


# -------------------------------------------------------- crossing channel closes

@pytest.fixture
def rawc(broker):
    conns = []

    def _open():
        c = raw.RawConnection(broker.host, broker.port)
        conns.append(c)
        c.handshake(broker.user, broker.password, broker.vhost)
        return c

    yield _open
    for c in conns:
        c.close()


def _publish_to_missing_exchange(c, channel):
    exchange = uniq("no-such-exchange")
    args = short(0) + shortstr(exchange) + shortstr("k") + octet(0)
    c.send(raw.method_frame(channel, raw.BASIC_PUBLISH, args)
           + raw.header_frame(channel, 1)
           + raw.body_frame(channel, b"x"))


def _declare_queue(c, channel):
    # ticket, queue "", passive/durable/exclusive/auto-delete/no-wait bits = exclusive
    c.send_method(channel, raw.QUEUE_DECLARE, short(0) + shortstr("") + octet(0b100) + table())
    m = c.expect(raw.QUEUE_DECLARE_OK, channel=channel)
    return m


def test_crossing_closes_cost_only_that_channel(rawc):
    """The client closes channel 1 while the server is closing it (404 for the
    publish): both closes are answered with close-ok, the client's late close-ok
    is ignored, and channel 2 as well as the connection live on."""
    c = rawc()
    c.open_channel(1)
    c.open_channel(2)
    _publish_to_missing_exchange(c, 1)
    c.send_method(1, raw.CHANNEL_CLOSE, short(200) + shortstr("bye") + short(0) + short(0))
    seen = set()
    while seen != {"close", "close-ok"}:
        m = c.read_method()
        assert m.channel == 1, "unexpected %r" % m
        if m.cm == raw.CHANNEL_CLOSE:
            code = m.close_fields()[0]
            assert code == 404
            seen.add("close")
        elif m.cm == raw.CHANNEL_CLOSE_OK:
            seen.add("close-ok")
        else:
            raise AssertionError("unexpected %r" % m)
    # the late close-ok for the server's close
    c.send_method(1, raw.CHANNEL_CLOSE_OK)
    # the other channel still works, and so does the connection
    _declare_queue(c, 2)
    # channel 1 can be opened again
    c.open_channel(1)
    _declare_queue(c, 1)


def test_close_ok_after_answering_the_servers_close_with_close(rawc):
    """A client that answers the server's channel.close with its own close gets
    close-ok; its close-ok afterwards is ignored too."""
    c = rawc()
    c.open_channel(1)
    _publish_to_missing_exchange(c, 1)
    m = c.read_method()
    assert m.cm == raw.CHANNEL_CLOSE and m.channel == 1
    c.send_method(1, raw.CHANNEL_CLOSE, short(200) + shortstr("bye") + short(0) + short(0))
    c.expect(raw.CHANNEL_CLOSE_OK, channel=1)
    c.send_method(1, raw.CHANNEL_CLOSE_OK)
    c.open_channel(2)
    _declare_queue(c, 2)


def test_frames_in_flight_on_a_closed_channel_are_discarded(rawc):
    """Frames the client sent before it saw the server's close are dropped
    until the client's close-ok, as RabbitMQ does."""
    c = rawc()
    c.open_channel(1)
    _publish_to_missing_exchange(c, 1)
    # still in flight from the client's point of view: more publishes on channel 1
    for _ in range(3):
        _publish_to_missing_exchange(c, 1)
    m = c.read_method()
    assert m.cm == raw.CHANNEL_CLOSE and m.channel == 1
    assert m.close_fields()[0] == 404
    c.send_method(1, raw.CHANNEL_CLOSE_OK)
    c.open_channel(2)
    _declare_queue(c, 2)


def test_pika_close_right_after_a_failing_publish(connect):
    """pika closes a channel just after a publish the server rejects; whichever
    close wins, the connection and its other channels are unharmed."""
    c = connect()
    other = c.channel()
    qn = other.queue_declare("", exclusive=True).method.queue
    for _ in range(20):
        ch = c.channel()
        ch.basic_publish(uniq("no-such-exchange"), "k", b"x")
        try:
            ch.close()
        except (pika.exceptions.ChannelWrongStateError, pika.exceptions.ChannelClosed):
            pass
        c.process_data_events(0)
        assert c.is_open
    other.basic_publish("", qn, b"still here")
    assert get_message(other, qn)[2] == b"still here"


# ---------------------------------------------- management: trailing slashes

LISTINGS = [
    "/api/overview", "/api/nodes", "/api/connections", "/api/channels", "/api/consumers",
    "/api/exchanges", "/api/queues", "/api/bindings", "/api/vhosts", "/api/users",
    "/api/permissions", "/api/policies", "/api/exchanges/%2F", "/api/queues/%2F",
    "/api/bindings/%2F", "/api/consumers/%2F", "/api/policies/%2F",
]


@pytest.mark.mgmt
@pytest.mark.parametrize("path", LISTINGS)
def test_listing_routes_answer_the_same_with_a_trailing_slash(mgmt, path):
    status, plain = mgmt.get(path)
    assert status == 200, (path, plain)
    status, slashed = mgmt.get(path + "/")
    assert status == 200, (path + "/", slashed)
    assert type(slashed) is type(plain)


@pytest.mark.mgmt
def test_connection_lookup_with_a_trailing_slash(mgmt, connect):
    """Client connection-recovery tests find their connection by listing
    /api/connections/ and then fetch it by name."""
    name = uniq("recovery")
    c = connect(client_properties={"connection_name": name})
    found = None
    deadline = time.monotonic() + 15
    while found is None and time.monotonic() < deadline:
        status, conns = mgmt.get("/api/connections/")
        assert status == 200
        found = next((x for x in conns
                      if x.get("client_properties", {}).get("connection_name") == name), None)
        if found is None:
            time.sleep(0.25)
    assert found is not None, "connection %s not listed" % name
    status, one = mgmt.get("/api/connections/%s/" % q(found["name"]))
    assert status == 200 and one["name"] == found["name"]
    c.close()

