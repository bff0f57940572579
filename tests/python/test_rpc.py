"""Tutorial 6: RPC with reply_to + correlation_id, and direct reply-to."""
import threading
import time

import pika
import pytest

from conftest import uniq, wait_for, get_message, Thread

REPLY_TO = "amq.rabbitmq.reply-to"


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _rpc_server(broker, queue, ready, stop, served):
    c = broker.connect()
    try:
        ch = c.channel()
        ch.basic_qos(prefetch_count=1)

        def on_request(chan, method, props, body):
            n = int(body)
            served.append(props.reply_to)
            chan.basic_publish("", props.reply_to, str(fib(n)).encode(),
                               pika.BasicProperties(correlation_id=props.correlation_id))
            chan.basic_ack(method.delivery_tag)

        ch.basic_consume(queue, on_request)
        ready.set()
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            c.process_data_events(time_limit=0.05)
    finally:
        c.close()


@pytest.fixture
def rpc_server(broker, connect):
    q = uniq("rpc_queue")
    setup = connect().channel()
    setup.queue_declare(q)
    ready, stop, served = threading.Event(), threading.Event(), []
    t = Thread(_rpc_server, broker, q, ready, stop, served)
    t.start()
    assert ready.wait(5)
    yield q, served
    stop.set()
    t.join(10)
    setup.queue_delete(q)


def test_classic_rpc_with_callback_queue(connect, rpc_server):
    q, served = rpc_server
    conn = connect()
    ch = conn.channel()
    callback = ch.queue_declare("", exclusive=True).method.queue
    responses = {}
    ch.basic_consume(callback, lambda c, m, p, b: responses.__setitem__(p.correlation_id, b),
                     auto_ack=True)
    ids = {}
    for n in (1, 10, 20, 30):
        cid = uniq("cid")
        ids[cid] = n
        ch.basic_publish("", q, str(n).encode(),
                         pika.BasicProperties(reply_to=callback, correlation_id=cid))
    assert wait_for(lambda: len(responses) == 4, 5, conn=conn), responses
    for cid, n in ids.items():
        assert responses[cid] == str(fib(n)).encode()
    assert served == [callback] * 4


def test_direct_reply_to(connect, rpc_server):
    q, served = rpc_server
    conn = connect()
    ch = conn.channel()
    got = []
    # must consume from the pseudo-queue (no-ack) before publishing
    tag = ch.basic_consume(REPLY_TO, lambda c, m, p, b: got.append((m, p, b)), auto_ack=True)
    ch.basic_publish("", q, b"10", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1"))
    assert wait_for(lambda: len(got) == 1, 5, conn=conn)
    m, p, body = got[0]
    assert body == b"55"
    assert p.correlation_id == "c-1"
    assert m.consumer_tag == tag
    assert m.exchange == ""
    # the server saw a per-channel reply address, not the bare pseudo-queue name
    assert served[0].startswith(REPLY_TO + ".")
    assert len(served[0]) > len(REPLY_TO) + 1
    assert m.routing_key == served[0]
    # a second request on the same channel gets the same reply address
    ch.basic_publish("", q, b"11", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-2"))
    assert wait_for(lambda: len(got) == 2, 5, conn=conn)
    assert got[1][2] == b"89" and got[1][1].correlation_id == "c-2"
    assert served[1] == served[0]


def test_direct_reply_to_bare_name_declare_ok(ch):
    ok = ch.queue_declare(REPLY_TO, passive=True)
    assert ok.method.queue == REPLY_TO
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 1
    ok = ch.queue_declare(REPLY_TO)  # all declares of it are effectively passive
    assert ok.method.consumer_count == 1


def test_direct_reply_to_unknown_suffix_not_found(ch):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(REPLY_TO + ".bogus", passive=True)
    assert e.value.reply_code == 404
    assert e.value.reply_text == "NOT_FOUND - no queue 'amq.rabbitmq.reply-to.bogus' in vhost '/'"


def test_publish_with_reply_to_without_consumer(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_publish("", q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
        ch.queue_declare("", exclusive=True)  # sync point: the error arrives first
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"


def test_reply_consumer_must_be_no_ack(conn):
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_only_one_reply_consumer_per_channel(conn):
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - reply consumer already set"
    # other channels on the same connection may have their own
    ch2 = conn.channel()
    ch2.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)


def test_reply_to_unknown_address_is_unroutable(ch):
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish("", REPLY_TO + ".bogus", b"x", mandatory=True)


@pytest.mark.rabbit4
def test_passive_declare_of_live_reply_address(conn):
    # RabbitMQ 3.10 crashes the connection here (541 INTERNAL_ERROR); 4.x
    # (rabbit_volatile_queue:declare) answers declare-ok with 0 messages, 1 consumer.
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, b"req", pika.BasicProperties(reply_to=REPLY_TO))
    got = get_message(ch, q)
    address = got[1].reply_to
    ok = conn.channel().queue_declare(address, passive=True)
    assert ok.method.queue == address
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 1
