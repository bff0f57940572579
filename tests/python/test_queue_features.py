"""Commonly used queue arguments: TTL, expiry, length limits, priorities, dead-lettering."""
import time

import pika
import pytest

from conftest import uniq, drain, wait_for, get_message, channel_error


def _exists(conn, q):
    try:
        conn.channel().queue_declare(q, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 404
        return False


def test_queue_message_ttl(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-message-ttl": 100}).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"short-lived")
    assert wait_for(lambda: ch.queue_declare(q, passive=True).method.message_count == 0, 5)
    assert ch.basic_get(q)[0] is None


def test_per_message_expiration(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"expires", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q, b"stays")
    time.sleep(0.3)  # let the first message expire (no observable event to wait for)
    assert drain(ch, q) == [b"stays"]


def test_ttl_zero_expires_unless_delivered_immediately(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True, arguments={"x-message-ttl": 0}).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"nobody waiting")
    assert ch.basic_get(q)[0] is None
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", q, b"consumer waiting")
    assert wait_for(lambda: got == [b"consumer waiting"], 5, conn=conn)


def test_invalid_expiration_property(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue

    def go():
        ch.basic_publish("", q, b"x", pika.BasicProperties(expiration="soon"))
        ch.queue_declare("", exclusive=True)
    code, text = channel_error(go)
    assert (code, text) == (406, "PRECONDITION_FAILED - invalid expiration 'soon': no_integer")


def test_queue_expires_when_unused(connect):
    c = connect()
    q = uniq("expiring")
    c.channel().queue_declare(q, arguments={"x-expires": 200})
    assert _exists(c, q)
    # a (passive) declare counts as use and restarts the timer: poll slower than it
    assert wait_for(lambda: not _exists(c, q), 5, interval=0.6)


def test_max_length_drops_head(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-length": 2}).method.queue
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    assert drain(ch, q) == [b"3", b"4"]


def test_max_length_bytes(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-length-bytes": 10}).method.queue
    ch.confirm_delivery()
    for body in (b"aaaa", b"bbbb", b"cccc"):
        ch.basic_publish("", q, body)
    assert drain(ch, q) == [b"bbbb", b"cccc"]


def test_max_length_reject_publish_with_mandatory(ch):
    q = ch.queue_declare("", exclusive=True,
                         arguments={"x-max-length": 1, "x-overflow": "reject-publish"}).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"1")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", q, b"2")
    assert drain(ch, q) == [b"1"]


def test_priority_queue_orders_by_priority(ch):
    q = ch.queue_declare("", exclusive=True, arguments={"x-max-priority": 10}).method.queue
    ch.confirm_delivery()
    for body, prio in [(b"low", 1), (b"none", None), (b"high", 9), (b"mid", 5), (b"over", 200)]:
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    # priorities above x-max-priority count as the maximum; no priority counts as 0
    assert drain(ch, q) == [b"over", b"high", b"mid", b"low", b"none"]


def test_dead_letter_on_expiry_with_routing_key(ch):
    dlx = uniq("dlx")
    ch.exchange_declare(dlx, "direct", auto_delete=True)
    dead = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dead, dlx, "expired-key")
    q = ch.queue_declare("", exclusive=True, arguments={
        "x-message-ttl": 50, "x-dead-letter-exchange": dlx,
        "x-dead-letter-routing-key": "expired-key"}).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"late")
    m, p, body = get_message(ch, dead)
    assert body == b"late"
    assert m.routing_key == "expired-key"
    assert m.exchange == dlx
    [death] = p.headers["x-death"]
    assert death["reason"] == "expired"
    assert death["queue"] == q
    assert death["routing-keys"] == [q]
    assert death["count"] == 1
    assert p.headers["x-first-death-reason"] == "expired"
    assert p.headers["x-first-death-queue"] == q
    assert p.headers["x-first-death-exchange"] == ""


def test_dead_letter_on_max_length(ch):
    dlx = uniq("dlx")
    ch.exchange_declare(dlx, "fanout", auto_delete=True)
    dead = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(dead, dlx)
    q = ch.queue_declare("", exclusive=True, arguments={
        "x-max-length": 1, "x-dead-letter-exchange": dlx}).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"first")
    ch.basic_publish("", q, b"second")
    m, p, body = get_message(ch, dead)
    assert body == b"first"
    assert p.headers["x-death"][0]["reason"] == "maxlen"
    assert drain(ch, q) == [b"second"]


@pytest.mark.rabbit4
def test_consumer_timeout_closes_the_channel_and_requeues(conn):
    """x-consumer-timeout (RabbitMQ 3.12+): a delivery left unacked past it closes the channel
    with 406, and the message comes back, redelivered."""
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True, arguments={"x-consumer-timeout": 500}).method.queue
    ch.basic_publish("", q, b"slow job")
    ch.basic_consume(q, lambda c, m, p, b: None)  # never acks
    code, text = channel_error(ch.start_consuming)
    assert code == 406
    assert text == ("PRECONDITION_FAILED - delivery acknowledgement on channel %d timed out. "
                    "Timeout value used: 500 ms. This timeout value can be configured, "
                    "see consumers doc guide to learn more" % ch.channel_number)
    m, _, body = get_message(conn.channel(), q)
    assert body == b"slow job" and m.redelivered


@pytest.mark.warren
def test_message_deduplication(ch):
    """x-message-deduplication (the community plugin's queue arguments, built into Warren): a
    duplicate within the window is confirmed but not enqueued."""
    q = ch.queue_declare("", exclusive=True, arguments={
        "x-message-deduplication": True, "x-cache-ttl": 60000}).method.queue
    ch.confirm_delivery()
    for body, key in [(b"a", "k1"), (b"a again", "k1"), (b"b", "k2")]:
        ch.basic_publish("", q, body, pika.BasicProperties(headers={"x-deduplication-header": key}))
    ch.basic_publish("", q, b"c", pika.BasicProperties(message_id="m-1"))
    ch.basic_publish("", q, b"c again", pika.BasicProperties(message_id="m-1"))
    assert drain(ch, q) == [b"a", b"b", b"c"]


@pytest.mark.warren
def test_delayed_message_exchange(ch):
    """x-delayed-message (the community plugin's exchange, built into Warren): a message with
    an x-delay header reaches its queue only after the delay, routed by x-delayed-type, with
    x-delay negated; one without routes at once."""
    x = uniq("delayed")
    ch.exchange_declare(x, exchange_type="x-delayed-message", arguments={"x-delayed-type": "direct"})
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="k")
    ch.confirm_delivery()
    start = time.monotonic()
    ch.basic_publish(x, "k", b"later", pika.BasicProperties(headers={"x-delay": 800}))
    ch.basic_publish(x, "k", b"now")
    assert get_message(ch, q)[2] == b"now"
    assert ch.basic_get(q, auto_ack=True)[0] is None
    wait_for(lambda: ch.queue_declare(q, passive=True).method.message_count == 1, timeout=5, conn=ch.connection)
    assert time.monotonic() - start >= 0.8
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"later" and props.headers["x-delay"] == -800
    ch.exchange_delete(x)
