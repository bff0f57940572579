"""Declare/delete/bind error cases and their exact reply codes and texts."""
import re

import pika
import pytest

from conftest import uniq, channel_error, drain, wait_for


# ------------------------------------------------------------------ queues
@pytest.mark.parametrize("first,second,text", [
    (dict(durable=False), dict(durable=True),
     "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
    (dict(durable=True), dict(durable=False),
     "inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'"),
    (dict(auto_delete=False), dict(auto_delete=True),
     "inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': received 'true' but current is 'false'"),
    (dict(arguments={"x-max-length": 10}), dict(arguments={"x-max-length": 20}),
     "inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': received '20' but current is '10'"),
    (dict(arguments={"x-max-length": 10}), dict(),
     "inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': "
     "received none but current is the value '10' of type 'signedint'"),
    (dict(), dict(arguments={"x-message-ttl": 1000}),
     "inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': "
     "received the value '1000' of type 'signedint' but current is none"),
    (dict(arguments={"x-dead-letter-exchange": "a"}), dict(arguments={"x-dead-letter-exchange": "b"}),
     "inequivalent arg 'x-dead-letter-exchange' for queue '{q}' in vhost '/': received 'b' but current is 'a'"),
], ids=["durable-on", "durable-off", "auto_delete", "arg-value", "arg-missing", "arg-added", "dlx"])
def test_queue_redeclare_with_different_properties(conn, first, second, text):
    ch = conn.channel()
    q = uniq("redecl")
    ch.queue_declare(q, **first)
    code, reply = channel_error(ch.queue_declare, q, **second)
    assert code == 406
    assert reply == "PRECONDITION_FAILED - " + text.format(q=q)
    # the queue is unchanged and still usable
    ch = conn.channel()
    ok = ch.queue_declare(q, **first)
    assert ok.method.queue == q
    ch.queue_delete(q)


def test_queue_redeclare_unknown_x_args_are_not_compared(ch):
    q = uniq("redecl")
    ch.queue_declare(q, arguments={"x-foo": "bar", "plain": 1})
    ok = ch.queue_declare(q, arguments={"x-foo": "baz"})
    assert ok.method.queue == q
    ch.queue_delete(q)


def test_queue_redeclare_exclusive_mismatch_is_resource_locked(conn):
    ch = conn.channel()
    q = uniq("redecl")
    ch.queue_declare(q)
    code, text = channel_error(ch.queue_declare, q, exclusive=True)
    assert code == 405
    assert text == ("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '/'. "
                    "It could be originally declared on another connection or the exclusive property "
                    "value does not match that of the original declaration." % q)
    conn.channel().queue_delete(q)


def test_passive_declare_missing_queue(conn):
    ch = conn.channel()
    code, text = channel_error(ch.queue_declare, "nope", passive=True)
    assert code == 404
    assert text == "NOT_FOUND - no queue 'nope' in vhost '/'"
    q = uniq("missing")
    code, text = channel_error(conn.channel().queue_declare, q, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_passive_declare_existing_queue_ignores_other_flags(ch):
    q = uniq("passive")
    ch.queue_declare(q)
    ok = ch.queue_declare(q, passive=True, durable=True, exclusive=True, auto_delete=True,
                          arguments={"x-max-length": 1})
    assert ok.method.queue == q
    ch.queue_delete(q)


@pytest.mark.parametrize("args,detail", [
    ({"x-max-length": "abc"}, '"expected integer, got longstr"'),
    ({"x-max-length": -1}, "{value_negative,-1}"),
    ({"x-message-ttl": -1}, "{value_negative,-1}"),
    ({"x-expires": 0}, "{value_zero,0}"),
    ({"x-max-priority": 300}, "{max_value_exceeded,300}"),
    ({"x-overflow": "foo"}, "invalid_overflow"),
    ({"x-queue-type": "foo"}, "\"unsupported queue type 'foo'\""),
], ids=["max-length-str", "max-length-neg", "ttl-neg", "expires-zero", "priority-300",
        "overflow", "queue-type"])
def test_queue_declare_invalid_argument(conn, args, detail):
    q = uniq("badarg")
    code, text = channel_error(conn.channel().queue_declare, q, arguments=args)
    arg = list(args)[0]
    assert code == 406
    assert text == "PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '/': %s" % (arg, q, detail)
    code, text = channel_error(conn.channel().queue_declare, q, passive=True)
    assert code == 404  # nothing was created


def test_amq_prefixed_queue_name_refused(conn):
    q = "amq." + uniq("q")
    code, text = channel_error(conn.channel().queue_declare, q)
    assert code == 403
    assert text == "ACCESS_REFUSED - queue name '%s' contains reserved prefix 'amq.*'" % q
    # passive declare only checks existence
    code, text = channel_error(conn.channel().queue_declare, q, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)


def test_server_named_queues(ch):
    names = set()
    for excl in (True, False, True):
        ok = ch.queue_declare("", exclusive=excl)
        assert re.fullmatch(r"amq\.gen-[A-Za-z0-9_-]{22}", ok.method.queue), ok.method.queue
        assert ok.method.message_count == 0
        assert ok.method.consumer_count == 0
        names.add(ok.method.queue)
    assert len(names) == 3
    for n in names:
        ch.queue_delete(n)


def test_declare_ok_counts(conn):
    ch = conn.channel()
    q = uniq("counts")
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", q, b"%d" % i)
    ok = ch.queue_declare(q, passive=True)
    assert (ok.method.message_count, ok.method.consumer_count) == (5, 0)
    c2 = conn.channel()
    c2.basic_qos(prefetch_count=2)
    c2.basic_consume(q, lambda *a: None)
    c3 = conn.channel()
    c3.basic_consume(q, lambda *a: None, auto_ack=True)
    # message_count counts only ready messages (not the ones delivered)
    counts = lambda: (lambda m: (m.message_count, m.consumer_count))(
        ch.queue_declare(q, passive=True).method)
    assert wait_for(lambda: counts() == (0, 2), 5, conn=conn), counts()
    c3.close()
    c2.close()  # the two unacked deliveries to c2 go back to the queue
    assert wait_for(lambda: counts() == (2, 0), 5, conn=conn), counts()
    ch.queue_delete(q)


def test_empty_queue_name_means_last_declared_queue(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    # bind: empty queue name and empty routing key both expand to the last queue
    ch.queue_bind("", "amq.direct")
    ch.confirm_delivery()
    ch.basic_publish("amq.direct", q, b"via shortcut", mandatory=True)
    m, p, body = ch.basic_get("", auto_ack=True)
    assert body == b"via shortcut"
    assert m.routing_key == q
    ch.basic_publish("", q, b"again")
    assert ch.queue_purge("").method.message_count == 1
    ch.queue_unbind("", "amq.direct", routing_key=q)
    tag = ch.basic_consume("", lambda *a: None)
    ch.basic_cancel(tag)
    ok = ch.queue_delete("")
    assert ok.method.message_count == 0
    code, text = channel_error(conn.channel().queue_declare, q, passive=True)
    assert code == 404


def test_empty_queue_name_without_previous_declare(conn):
    for op in (lambda c: c.queue_bind("", "amq.direct", "k"),
               lambda c: c.queue_purge(""),
               lambda c: c.basic_get(""),
               lambda c: c.queue_delete(""),
               lambda c: c.basic_consume("", lambda *a: None)):
        code, text = channel_error(op, conn.channel())
        assert (code, text) == (404, "NOT_FOUND - no previously declared queue")


def test_queue_delete_and_purge_report_counts(ch):
    q = uniq("cnt")
    ch.queue_declare(q)
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", q, b"x")
    assert ch.queue_purge(q).method.message_count == 3
    assert ch.queue_purge(q).method.message_count == 0
    ch.basic_publish("", q, b"x")
    ch.basic_publish("", q, b"y")
    assert ch.queue_delete(q).method.message_count == 2


def test_delete_missing_queue_and_exchange_is_ok(ch):
    assert ch.queue_delete(uniq("gone")).method.message_count == 0
    ok = ch.exchange_delete(uniq("gone"))
    assert ok.method.NAME == "Exchange.DeleteOk"


def test_queue_delete_if_unused(conn):
    ch = conn.channel()
    q = uniq("ifunused")
    ch.queue_declare(q)
    ch.basic_consume(q, lambda *a: None)
    code, text = channel_error(conn.channel().queue_delete, q, if_unused=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - queue '%s' in vhost '/' in use" % q)
    ch.close()
    assert conn.channel().queue_delete(q, if_unused=True).method.message_count == 0


def test_queue_delete_if_empty(conn):
    ch = conn.channel()
    q = uniq("ifempty")
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"x")
    code, text = channel_error(conn.channel().queue_delete, q, if_empty=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - queue '%s' in vhost '/' not empty" % q)
    ch = conn.channel()
    ch.queue_purge(q)
    assert ch.queue_delete(q, if_empty=True).method.message_count == 0


# ------------------------------------------------------------------ exchanges
@pytest.mark.parametrize("first,second,text", [
    (dict(exchange_type="direct"), dict(exchange_type="fanout"),
     "inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'fanout' but current is 'direct'"),
    (dict(exchange_type="direct"), dict(exchange_type="direct", durable=True),
     "inequivalent arg 'durable' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"),
    (dict(exchange_type="topic"), dict(exchange_type="topic", auto_delete=True),
     "inequivalent arg 'auto_delete' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"),
    (dict(exchange_type="direct"), dict(exchange_type="direct", internal=True),
     "inequivalent arg 'internal' for exchange '{x}' in vhost '/': received 'true' but current is 'false'"),
    (dict(exchange_type="direct"), dict(exchange_type="direct", arguments={"alternate-exchange": "ae"}),
     "inequivalent arg 'alternate-exchange' for exchange '{x}' in vhost '/': "
     "received the value 'ae' of type 'longstr' but current is none"),
], ids=["type", "durable", "auto_delete", "internal", "alternate-exchange"])
def test_exchange_redeclare_with_different_properties(conn, first, second, text):
    ch = conn.channel()
    x = uniq("xredecl")
    ch.exchange_declare(x, **first)
    code, reply = channel_error(ch.exchange_declare, x, **second)
    assert code == 406
    assert reply == "PRECONDITION_FAILED - " + text.format(x=x)
    conn.channel().exchange_delete(x)


def test_passive_declare_missing_exchange(conn):
    x = uniq("nox")
    code, text = channel_error(conn.channel().exchange_declare, x, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_amq_prefixed_exchange_name_refused(conn):
    x = "amq." + uniq("x")
    code, text = channel_error(conn.channel().exchange_declare, x, "direct")
    assert (code, text) == (403, "ACCESS_REFUSED - exchange name '%s' contains reserved prefix 'amq.*'" % x)


def test_predeclared_amq_exchanges(conn):
    ch = conn.channel()
    for name, typ in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                      ("amq.headers", "headers"), ("amq.match", "headers")]:
        ch.exchange_declare(name, typ, passive=True)
        ch.exchange_declare(name, typ, durable=True)  # equivalent redeclare is fine
    code, text = channel_error(ch.exchange_declare, "amq.direct", "fanout", durable=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange "
                                 "'amq.direct' in vhost '/': received 'fanout' but current is 'direct'")


def test_delete_amq_exchange_refused(conn):
    code, text = channel_error(conn.channel().exchange_delete, "amq.direct")
    assert (code, text) == (403, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' "
                                 "in vhost '/' not allowed")
    conn.channel().exchange_declare("amq.direct", passive=True)


@pytest.mark.parametrize("op", ["declare", "declare-passive", "delete", "bind", "unbind"])
def test_default_exchange_operations_refused(conn, op):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    fn = {
        "declare": lambda: ch.exchange_declare("", "direct"),
        "declare-passive": lambda: ch.exchange_declare("", "direct", passive=True),
        "delete": lambda: ch.exchange_delete(""),
        "bind": lambda: ch.queue_bind(q, "", "k"),
        "unbind": lambda: ch.queue_unbind(q, "", "k"),
    }[op]
    code, text = channel_error(fn)
    assert (code, text) == (403, "ACCESS_REFUSED - operation not permitted on the default exchange")


@pytest.mark.rabbit4
def test_unknown_exchange_type(conn):
    # RabbitMQ 4.x (commit b6aacb7): 406 channel error. 3.x closed the
    # whole connection with 503 COMMAND_INVALID instead.
    x = uniq("xt")
    typ = "x-no-such-type-" + uniq("t")
    code, text = channel_error(conn.channel().exchange_declare, x, typ)
    assert (code, text) == (406, "PRECONDITION_FAILED - unknown exchange type '%s'" % typ)
    assert conn.is_open
    code, _ = channel_error(conn.channel().exchange_declare, x, passive=True)
    assert code == 404


def test_exchange_delete_if_unused(conn):
    ch = conn.channel()
    x = uniq("xu")
    ch.exchange_declare(x, "direct")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, "k")
    code, text = channel_error(ch.exchange_delete, x, if_unused=True)
    assert (code, text) == (406, "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use" % x)
    ch = conn.channel()
    ch.queue_unbind(q, x, "k")
    ch.exchange_delete(x, if_unused=True)
    code, _ = channel_error(conn.channel().exchange_declare, x, passive=True)
    assert code == 404


def test_exchange_delete_removes_bindings(conn):
    ch = conn.channel()
    x = uniq("xd")
    ch.exchange_declare(x, "fanout")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x)
    ch.exchange_delete(x)
    ch.exchange_declare(x, "fanout")
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "", b"m", mandatory=True)
    ch.exchange_delete(x)


def test_invalid_alternate_exchange_argument_type(conn):
    x = uniq("xae")
    code, text = channel_error(conn.channel().exchange_declare, x, "direct",
                               arguments={"alternate-exchange": 5})
    assert (code, text) == (406, "PRECONDITION_FAILED - invalid type 'signedint' for arg "
                                 "'alternate-exchange' in exchange '%s' in vhost '/'" % x)


# ------------------------------------------------------------------ binding / publish
def test_bind_missing_queue_or_exchange(conn):
    q = uniq("noq")
    code, text = channel_error(conn.channel().queue_bind, q, "amq.direct", "k")
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)
    ch = conn.channel()
    real = ch.queue_declare("", exclusive=True).method.queue
    x = uniq("nox")
    code, text = channel_error(ch.queue_bind, real, x, "k")
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)


def test_unbind_nonexistent_binding_is_ok(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ok = ch.queue_unbind(q, "amq.direct", "never-bound")
    assert ok.method.NAME == "Queue.UnbindOk"


def test_publish_to_missing_exchange(conn):
    ch = conn.channel()
    x = uniq("nox")
    def go():
        ch.basic_publish(x, "k", b"m")
        ch.queue_declare("", exclusive=True)  # sync point
    code, text = channel_error(go)
    assert (code, text) == (404, "NOT_FOUND - no exchange '%s' in vhost '/'" % x)
    assert conn.is_open


def test_publish_to_internal_exchange_refused(conn):
    ch = conn.channel()
    x = uniq("internal")
    ch.exchange_declare(x, "direct", internal=True)
    def go():
        ch.basic_publish(x, "k", b"m")
        ch.queue_declare("", exclusive=True)
    code, text = channel_error(go)
    assert (code, text) == (403, "ACCESS_REFUSED - cannot publish to internal exchange '%s' in vhost '/'" % x)
    conn.channel().exchange_delete(x)


def test_consume_get_purge_missing_queue(conn):
    q = uniq("noq")
    expected = (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)
    assert channel_error(conn.channel().basic_consume, q, lambda *a: None) == expected
    assert channel_error(conn.channel().basic_get, q) == expected
    assert channel_error(conn.channel().queue_purge, q) == expected


def test_channel_error_leaves_connection_and_other_channels_usable(conn):
    keep = conn.channel()
    q = keep.queue_declare("", exclusive=True).method.queue
    bad = conn.channel()
    channel_error(bad.queue_declare, uniq("nope"), passive=True)
    assert bad.is_closed
    assert conn.is_open
    keep.confirm_delivery()
    keep.basic_publish("", q, b"still works")
    assert drain(keep, q, expected=1) == [b"still works"]
