"""Authentication, vhosts and permissions.

Users/vhosts/permissions come from conftest.ACCESS_SETUP (rabbitmqctl for an
AMQP_URL broker, the --config TOML file for Warren)."""
import re

import pika
import pytest

import amqp_raw as raw
from conftest import uniq, channel_error, get_message, drain

ALICE = ("warren-alice", "alice-secret")
BOB = ("warren-bob", "bob-secret")      # configure/write only "^bob-.*", read ".*" on "/"
CAROL = ("warren-carol", "carol-secret")  # no permissions anywhere
V1 = "warren-test-v1"

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")


def refused(broker, perm, kind, name, user, vhost="/"):
    """RabbitMQ >= 3.12 prefixes the permission ("configure access to ...");
    3.10/3.11 did not. Warren must produce the 4.x text."""
    text = "access to %s '%s' in vhost '%s' refused for user '%s'" % (kind, name, vhost, user)
    v = broker.version.split(".")
    if broker.is_rabbitmq3 and len(v) > 1 and v[1].isdigit() and int(v[1]) < 12:
        return "ACCESS_REFUSED - " + text
    return "ACCESS_REFUSED - %s %s" % (perm, text)


@pytest.fixture
def as_user(broker, access_setup):
    conns = []

    def _connect(creds, vhost="/"):
        c = broker.connect(user=creds[0], password=creds[1], virtual_host=vhost)
        conns.append(c)
        return c

    yield _connect
    for c in conns:
        if c.is_open:
            c.close()


# ------------------------------------------------------------------ authentication
@pytest.mark.parametrize("user,password", [("guest", "wrong-password"),
                                           ("warren-alice", "guest"),
                                           ("no-such-user", "x")])
def test_bad_credentials_refused(broker, access_setup, user, password):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
        broker.connect(user=user, password=password)
    assert "(403)" in str(e.value)
    assert LOGIN_REFUSED in str(e.value)


def test_bad_credentials_raw_with_failure_close_capability(broker, access_setup):
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.send(raw.PROTOCOL_HEADER)
        start = c.expect(raw.CONNECTION_START, channel=0)
        assert b"PLAIN" in start.args
        c.send_method(0, raw.CONNECTION_START_OK,
                      raw.table({"capabilities": {"authentication_failure_close": True}})
                      + raw.shortstr("PLAIN") + raw.longstr(b"\x00guest\x00nope") + raw.shortstr("en_US"))
        m = c.read_method()
        assert m.cm == raw.CONNECTION_CLOSE and m.channel == 0
        assert m.close_fields() == (403, LOGIN_REFUSED, 0, 0)
    finally:
        c.close()


def test_bad_credentials_raw_without_capability_just_closes(broker, access_setup):
    c = raw.RawConnection(broker.host, broker.port)
    try:
        c.send(raw.PROTOCOL_HEADER)
        c.expect(raw.CONNECTION_START, channel=0)
        c.send_method(0, raw.CONNECTION_START_OK,
                      raw.table({}) + raw.shortstr("PLAIN") + raw.longstr(b"\x00guest\x00nope")
                      + raw.shortstr("en_US"))
        assert c.read_until_eof(timeout=10) == b""   # no connection.close, no tune
    finally:
        c.close()


def test_good_credentials_other_user(as_user):
    c = as_user(ALICE)
    ch = c.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"hi alice")
    assert get_message(ch, q)[2] == b"hi alice"


# ------------------------------------------------------------------ vhosts
def test_unknown_vhost_not_allowed(broker, access_setup):
    vhost = uniq("no-such-vhost")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        broker.connect(virtual_host=vhost)
    assert "(530)" in str(e.value)
    assert "NOT_ALLOWED - vhost %s not found" % vhost in str(e.value)


def test_unknown_vhost_raw(broker, access_setup):
    c = raw.RawConnection(broker.host, broker.port)
    vhost = uniq("no-such-vhost")
    try:
        c.send(raw.PROTOCOL_HEADER)
        c.expect(raw.CONNECTION_START)
        c.send_method(0, raw.CONNECTION_START_OK,
                      raw.table({}) + raw.shortstr("PLAIN") + raw.longstr(b"\x00guest\x00guest")
                      + raw.shortstr("en_US"))
        tune = c.expect(raw.CONNECTION_TUNE)
        c.send_method(0, raw.CONNECTION_TUNE_OK, tune.args[:8])
        c.send_method(0, raw.CONNECTION_OPEN, raw.shortstr(vhost) + raw.shortstr("") + raw.octet(0))
        code, text, cls, meth = c.expect_connection_close()
        assert (code, text) == (530, "NOT_ALLOWED - vhost %s not found" % vhost)
        assert (cls, meth) == (10, 40)   # caused by connection.open
    finally:
        c.close()


def test_user_without_permissions_on_vhost(broker, access_setup):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        broker.connect(user=CAROL[0], password=CAROL[1])
    assert "(530)" in str(e.value)
    assert "NOT_ALLOWED - access to vhost '/' refused for user 'warren-carol'" in str(e.value)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as e:
        broker.connect(user=BOB[0], password=BOB[1], virtual_host=V1)
    assert "NOT_ALLOWED - access to vhost '%s' refused for user 'warren-bob'" % V1 in str(e.value)


def test_vhosts_are_isolated(as_user, broker):
    a = as_user(ALICE, V1)
    ch = a.channel()
    q = uniq("v1q")
    ch.queue_declare(q)
    ch.confirm_delivery()
    ch.basic_publish("", q, b"in v1")
    root = as_user(ALICE, "/")
    code, text = channel_error(root.channel().queue_declare, q, passive=True)
    assert (code, text) == (404, "NOT_FOUND - no queue '%s' in vhost '/'" % q)
    code, text = channel_error(a.channel().queue_declare, uniq("x"), passive=True)
    assert code == 404 and text.endswith("in vhost '%s'" % V1)
    # a same-named queue in "/" is a different queue
    root.channel().queue_declare(q)
    assert root.channel().basic_get(q)[0] is None
    assert get_message(a.channel(), q)[2] == b"in v1"
    root.channel().queue_delete(q)
    a.channel().queue_delete(q)


def test_vhost_has_its_own_amq_exchanges(as_user):
    a = as_user(ALICE, V1)
    ch = a.channel()
    for x, t in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
                 ("amq.headers", "headers"), ("amq.match", "headers")]:
        ch.exchange_declare(x, t, passive=True)


# ------------------------------------------------------------------ permissions
def test_configure_permission_on_queue_declare(broker, as_user):
    c = as_user(BOB)
    q = uniq("alice")
    code, text = channel_error(c.channel().queue_declare, q)
    assert code == 403
    assert text == refused(broker, "configure", "queue", q, BOB[0])
    ok = c.channel().queue_declare(uniq("bob"), exclusive=True)   # matches ^bob-
    assert ok.method.queue.startswith("bob-")


def test_configure_permission_on_server_named_queue(broker, as_user):
    c = as_user(BOB)
    code, text = channel_error(c.channel().queue_declare, "", exclusive=True)
    assert code == 403
    m = re.fullmatch(r"(.*)'(amq\.gen-[A-Za-z0-9_-]{22})'(.*)", text)
    assert m, text
    assert text == refused(broker, "configure", "queue", m.group(2), BOB[0])


def test_configure_permission_on_exchange_declare_and_delete(broker, as_user, connect):
    c = as_user(BOB)
    x = uniq("alice-x")
    code, text = channel_error(c.channel().exchange_declare, x, "direct")
    assert (code, text) == (403, refused(broker, "configure", "exchange", x, BOB[0]))
    connect().channel().exchange_declare(x, "direct")  # as guest
    code, text = channel_error(c.channel().exchange_delete, x)
    assert (code, text) == (403, refused(broker, "configure", "exchange", x, BOB[0]))
    connect().channel().exchange_delete(x)


def test_configure_permission_on_queue_delete(broker, as_user, connect):
    q = uniq("guestq")
    connect().channel().queue_declare(q)
    c = as_user(BOB)
    code, text = channel_error(c.channel().queue_delete, q)
    assert (code, text) == (403, refused(broker, "configure", "queue", q, BOB[0]))
    connect().channel().queue_delete(q)


def test_passive_declare_needs_no_configure_permission(as_user, connect):
    q = uniq("guestq")
    connect().channel().queue_declare(q)
    c = as_user(BOB)
    ok = c.channel().queue_declare(q, passive=True)
    assert ok.method.queue == q
    connect().channel().queue_delete(q)


def test_write_permission_on_publish(broker, as_user):
    c = as_user(BOB)
    ch = c.channel()
    bobq = ch.queue_declare(uniq("bob"), exclusive=True).method.queue

    def publish(x, rk):
        ch2 = c.channel()
        ch2.basic_publish(x, rk, b"m")
        ch2.queue_declare(bobq, passive=True)  # sync point
    code, text = channel_error(publish, "amq.direct", "k")
    assert (code, text) == (403, refused(broker, "write", "exchange", "amq.direct", BOB[0]))
    # the default exchange is called amq.default in permission checks
    code, text = channel_error(publish, "", bobq)
    assert (code, text) == (403, refused(broker, "write", "exchange", "amq.default", BOB[0]))


def test_write_permission_on_queue_bind(broker, as_user, connect):
    q = uniq("guestq")
    connect().channel().queue_declare(q)
    c = as_user(BOB)
    # binding needs write on the queue (and read on the exchange)
    code, text = channel_error(c.channel().queue_bind, q, "amq.direct", "k")
    assert (code, text) == (403, refused(broker, "write", "queue", q, BOB[0]))
    bobq = c.channel().queue_declare(uniq("bob"), exclusive=True).method.queue
    c.channel().queue_bind(bobq, "amq.direct", "k")       # read on amq.direct is allowed
    connect().channel().queue_delete(q)


def test_read_permission_allows_consume_and_get(as_user, connect):
    q = uniq("guestq")
    g = connect().channel()
    g.queue_declare(q)
    g.confirm_delivery()
    g.basic_publish("", q, b"for bob")
    c = as_user(BOB)
    assert get_message(c.channel(), q)[2] == b"for bob"
    c.channel().basic_consume(q, lambda *a: None)
    g.queue_delete(q)


def test_permission_error_keeps_connection_open(broker, as_user):
    c = as_user(BOB)
    channel_error(c.channel().queue_declare, uniq("alice"))
    assert c.is_open
    c.channel().queue_declare(uniq("bob"), exclusive=True)


# ------------------------------------------------------------------ user-id validation
def test_validated_user_id_mismatch(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue

    def go():
        ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="warren-bob"))
        ch.queue_declare("", exclusive=True)
    code, text = channel_error(go)
    assert (code, text) == (406, "PRECONDITION_FAILED - user_id property set to 'warren-bob' "
                                 "but authenticated user was 'guest'")
    assert drain(conn.channel(), q) == []


def test_validated_user_id_match(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="guest"))
    assert get_message(ch, q)[1].user_id == "guest"
