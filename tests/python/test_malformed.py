"""Protocol violations on raw sockets. For every case the exact server reaction
(RabbitMQ's) is asserted, and a connection opened beforehand must keep working."""
import struct

import pytest

import amqp_raw as raw
from amqp_raw import (short, long_, octet, shortstr, table, frame, method_frame, header_frame,
                      body_frame, heartbeat_frame)
from conftest import uniq, get_message


@pytest.fixture
def witness(connect):
    """A connection opened before the misbehaving one; must survive it."""
    c = connect()
    ch = c.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    yield c
    assert c.is_open
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("", q, b"still alive")
    assert get_message(ch, q)[2] == b"still alive"


@pytest.fixture
def rawc(broker):
    conns = []

    def _open(handshake=True, **kw):
        c = raw.RawConnection(broker.host, broker.port)
        conns.append(c)
        if handshake:
            c.handshake(broker.user, broker.password, broker.vhost, **kw)
        return c

    yield _open
    for c in conns:
        c.close()


def publish_frame(channel, routing_key, exchange="", mandatory=False, immediate=False):
    bits = (1 if mandatory else 0) | (2 if immediate else 0)
    return method_frame(channel, raw.BASIC_PUBLISH,
                        short(0) + shortstr(exchange) + shortstr(routing_key) + octet(bits))


# ------------------------------------------------------------------ protocol header
@pytest.mark.parametrize("header", [b"AMQP\x00\x00\x09\x02", b"AMQP\x00\x00\x0a\x00",
                                    b"AMQP\x00\x00\x09\x00"])
def test_unsupported_protocol_version_gets_091_header(rawc, witness, header):
    c = rawc(handshake=False)
    c.send(header)
    assert c.read_until_eof() == b"AMQP\x00\x00\x09\x01"


@pytest.mark.rabbit4
@pytest.mark.parametrize("header", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HELLOxxx",
                                    b"AMQP\x01\x01\x08\x00", b"AMQP\x01\x01\x00\x0a"])
def test_garbage_protocol_header(broker, rawc, witness, header):
    # RabbitMQ 4.x answers anything that is not "AMQP 0 0 9+ x" with the AMQP 1.0
    # SASL header (rabbit_reader:refuse_connection/2); 3.x answered AMQP 0-9-1
    # and still spoke AMQP 0-8. Warren speaks only 0-9-1, so it offers that header,
    # as the 0-9-1 spec (section 4.2.2) asks.
    c = rawc(handshake=False)
    c.send(header)
    expected = b"AMQP\x00\x00\x09\x01" if broker.is_warren else b"AMQP\x03\x01\x00\x00"
    assert c.read_until_eof() == expected


def test_valid_header_gets_connection_start(rawc, witness):
    c = rawc(handshake=False)
    c.send(raw.PROTOCOL_HEADER)
    start = c.expect(raw.CONNECTION_START, channel=0)
    assert start.args[:2] == b"\x00\x09"          # version-major 0, version-minor 9
    assert b"PLAIN" in start.args
    assert b"en_US" in start.args


# ------------------------------------------------------------------ framing errors
def test_bad_frame_end_octet(rawc, witness):
    c = rawc()
    c.send(frame(raw.FRAME_HEARTBEAT, 0, b"", end=0xAB))
    code, text, cls, meth = c.expect_connection_close()
    assert (code, text, cls, meth) == (
        501, "FRAME_ERROR - type 8, all octets = <<>>: {invalid_frame_end_marker,171}", 0, 0)
    assert c.read_until_eof(timeout=10) == b""


def test_bad_frame_end_octet_on_method_frame(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(method_frame(1, raw.QUEUE_DECLARE, short(0) + shortstr("x") + octet(0) + table(), end=0x00))
    code, text, cls, meth = c.expect_connection_close()
    assert code == 501
    assert text.startswith("FRAME_ERROR - type 1, all octets = <<")
    assert "invalid_frame_end_marker" in text
    assert (cls, meth) == (0, 0)


def test_unknown_frame_type(rawc, witness):
    c = rawc()
    c.send(frame(9, 0, b""))
    assert c.expect_connection_close() == (501, "FRAME_ERROR - type 9, all octets = <<>>: unknown_frame", 0, 0)
    assert c.read_until_eof() == b""


def test_method_frame_too_short(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(frame(raw.FRAME_METHOD, 1, b"\x00\x32"))
    assert c.expect_connection_close() == (
        501, "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame", 0, 0)


def test_truncated_method_arguments(rawc, witness):
    c = rawc()
    c.open_channel(1)
    # queue.declare whose queue-name shortstr claims 5 bytes but has 2
    c.send(frame(raw.FRAME_METHOD, 1, short(50) + short(10) + short(0) + b"\x05ab"))
    assert c.expect_connection_close() == (501, "FRAME_ERROR - cannot decode <<0,0,5,97,98>>", 50, 10)


@pytest.mark.parametrize("cm", [(60, 99), (99, 10), (10, 99)], ids=["unknown-method", "unknown-class",
                                                                   "unknown-connection-method"])
def test_unknown_class_or_method_drops_connection(broker, rawc, witness, cm):
    # RabbitMQ's reader process exits on an unknown (class, method) pair: the TCP
    # connection is closed without a connection.close frame. Warren deliberately says why
    # first: connection.close 503 COMMAND_INVALID naming the ids, then the socket closes.
    c = rawc()
    c.open_channel(1)
    c.send_method(1 if cm[0] != 10 else 0, cm, b"")
    if broker.is_warren:
        assert c.expect_connection_close() == (
            503, "COMMAND_INVALID - unknown method class %d method %d" % cm, cm[0], cm[1])
    assert c.read_until_eof() == b""


# frame_max 8192: the minimum RabbitMQ 4.1+ accepts in tune-ok (3.x/4.0: 4096)
def test_oversized_frame(rawc, witness):
    c = rawc(frame_max=8192)
    c.open_channel(1)
    c.send(body_frame(1, b"x" * 9000))
    assert c.expect_connection_close() == (
        501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,9000,8184}", 0, 0)


def test_frame_one_byte_over_limit(rawc, witness):
    c = rawc(frame_max=8192)
    c.open_channel(1)
    c.send(publish_frame(1, "x"))
    c.send(header_frame(1, 8193))
    c.send(body_frame(1, b"y" * 8193))
    assert c.expect_connection_close() == (
        501, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,8193,8184}", 0, 0)


def test_payload_of_exactly_frame_max_is_tolerated(rawc, witness):
    # RabbitMQ allows a payload of frame_max bytes (frame = frame_max + 8): clients
    # commonly get the overhead wrong. Its own frames respect frame_max.
    c = rawc(frame_max=8192)
    c.open_channel(1)
    c.send_method(1, raw.QUEUE_DECLARE, short(0) + shortstr("") + octet(0b00100) + table())
    ok = c.expect(raw.QUEUE_DECLARE_OK, channel=1)
    q = ok.args[1:1 + ok.args[0]].decode()
    c.send(publish_frame(1, q))
    c.send(header_frame(1, 8192))
    c.send(body_frame(1, b"y" * 8192))
    c.send_method(1, (60, 70), short(0) + shortstr(q) + octet(1))   # basic.get no-ack
    c.expect((60, 71), channel=1)                                    # get-ok
    ftype, ch, payload = c.read_frame()
    assert ftype == raw.FRAME_HEADER
    body = b""
    sizes = []
    while len(body) < 8192:
        ftype, ch, payload = c.read_frame()
        assert ftype == raw.FRAME_BODY
        sizes.append(len(payload))
        body += payload
    assert body == b"y" * 8192
    assert sizes == [8184, 8]


# ------------------------------------------------------------------ channel errors
def test_second_channel_open(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send_method(1, raw.CHANNEL_OPEN, shortstr(""))
    assert c.expect_connection_close() == (504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
    assert c.read_until_eof() == b""


def test_method_on_unopened_channel(rawc, witness):
    c = rawc()
    c.send_method(5, raw.QUEUE_DECLARE, short(0) + shortstr("") + octet(0) + table())
    assert c.expect_connection_close() == (504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10)


def test_channel_close_on_unopened_channel(rawc, witness):
    c = rawc()
    c.send_method(7, raw.CHANNEL_CLOSE, short(200) + shortstr("") + short(0) + short(0))
    assert c.expect_connection_close() == (504, "CHANNEL_ERROR - expected 'channel.open'", 20, 40)


def test_channel_open_on_channel_zero(rawc, witness):
    c = rawc()
    c.send_method(0, raw.CHANNEL_OPEN, shortstr(""))
    assert c.expect_connection_close() == (
        504, "CHANNEL_ERROR - unexpected method in connection state running", 20, 10)


def test_content_body_on_unopened_channel(rawc, witness):
    c = rawc()
    c.send(body_frame(5, b"hello"))
    assert c.expect_connection_close() == (
        505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)
    assert c.read_until_eof() == b""


def test_content_header_on_unopened_channel(rawc, witness):
    c = rawc()
    c.send(header_frame(5, 5))
    assert c.expect_connection_close() == (
        505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)


def test_content_body_without_publish(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(body_frame(1, b"hello"))
    assert c.expect_connection_close() == (
        505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", 0, 0)


def test_content_on_channel_zero(rawc, witness):
    c = rawc()
    c.send(body_frame(0, b"x"))
    assert c.expect_connection_close() == (505, 'UNEXPECTED_FRAME - type 3, all octets = <<"x">>', 0, 0)


def test_heartbeat_on_nonzero_channel(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(heartbeat_frame(1))
    assert c.expect_connection_close() == (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0)
    assert c.read_until_eof() == b""


def test_heartbeat_on_unopened_nonzero_channel(rawc, witness):
    c = rawc()
    c.send(heartbeat_frame(3))
    assert c.expect_connection_close() == (505, "UNEXPECTED_FRAME - type 8, all octets = <<>>", 0, 0)


def test_heartbeat_on_channel_zero_is_fine(rawc, witness):
    c = rawc()
    c.send(heartbeat_frame(0))
    c.open_channel(1)       # connection still fully usable


def test_header_for_wrong_class(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(publish_frame(1, "x"))
    c.send(header_frame(1, 1, class_id=50))
    assert c.expect_connection_close() == (
        505, "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead", 60, 40)


def test_method_instead_of_content_header(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(publish_frame(1, "x"))
    c.send_method(1, raw.CHANNEL_OPEN, shortstr(""))
    assert c.expect_connection_close() == (
        505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
        60, 40)


def test_method_instead_of_content_body(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(publish_frame(1, "x"))
    c.send(header_frame(1, 3))
    c.send_method(1, raw.CHANNEL_OPEN, shortstr(""))
    assert c.expect_connection_close() == (
        505, "UNEXPECTED_FRAME - expected content body, got non content body frame instead", 60, 40)


@pytest.mark.rabbit4
def test_body_longer_than_declared(rawc, witness):
    # 4.x rabbit_command_assembler rejects it; 3.10 silently waited forever.
    c = rawc()
    c.open_channel(1)
    c.send(publish_frame(1, "x"))
    c.send(header_frame(1, 3))
    c.send(body_frame(1, b"abcdef"))
    assert c.expect_connection_close() == (
        501, "FRAME_ERROR - content body frame exceeds remaining content size", 60, 40)


def test_immediate_flag_not_implemented(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send(publish_frame(1, "x", immediate=True))
    c.send(header_frame(1, 1))
    c.send(body_frame(1, b"x"))
    assert c.expect_connection_close() == (540, "NOT_IMPLEMENTED - immediate=true", 60, 40)


def test_channel_max_reached(rawc, witness):
    c = rawc(channel_max=2)
    c.open_channel(1)
    c.open_channel(2)
    c.send_method(3, raw.CHANNEL_OPEN, shortstr(""))
    assert c.expect_connection_close() == (
        530, "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)", 0, 0)


def test_tune_ok_frame_max_below_minimum_closes_silently(broker, rawc, witness):
    # negotiation failures during tuning: RabbitMQ sends no connection.close, the socket is
    # dropped. Warren deliberately says why first (530, RabbitMQ's own negotiation text).
    c = rawc(handshake=False)
    c.send(raw.PROTOCOL_HEADER)
    c.expect(raw.CONNECTION_START)
    c.send_method(0, raw.CONNECTION_START_OK, table({}) + shortstr("PLAIN")
                  + raw.longstr(b"\x00guest\x00guest") + shortstr("en_US"))
    tune = c.expect(raw.CONNECTION_TUNE)
    channel_max, frame_max, heartbeat = struct.unpack(">HIH", tune.args[:8])
    assert frame_max == 131072
    assert channel_max == 2047
    assert heartbeat == 60
    c.send_method(0, raw.CONNECTION_TUNE_OK, short(2047) + long_(1024) + short(0))
    c.send_method(0, raw.CONNECTION_OPEN, shortstr("/") + shortstr("") + octet(0))
    if broker.is_warren:
        assert c.expect_connection_close() == (530, "NOT_ALLOWED - frame_max=1024 < 8192 min size", 10, 31)
    assert c.read_until_eof(timeout=10) == b""


def test_client_connection_close_handshake(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send_method(0, raw.CONNECTION_CLOSE, short(200) + shortstr("bye") + short(0) + short(0))
    c.expect(raw.CONNECTION_CLOSE_OK, channel=0)
    # after close-ok it is the client's turn to close the socket


def test_client_channel_close_handshake(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send_method(1, raw.CHANNEL_CLOSE, short(200) + shortstr("") + short(0) + short(0))
    c.expect(raw.CHANNEL_CLOSE_OK, channel=1)
    c.open_channel(1)     # the channel number can be reused


def test_channel_error_then_close_ok_allows_reopen(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send_method(1, raw.QUEUE_DECLARE, short(0) + shortstr(uniq("missing")) + octet(1) + table())
    code, text, cls, meth = c.expect_channel_close(1)
    assert code == 404 and (cls, meth) == (50, 10)
    c.open_channel(1)
    c.send_method(1, raw.QUEUE_DECLARE, short(0) + shortstr("") + octet(0b00100) + table())
    c.expect(raw.QUEUE_DECLARE_OK, channel=1)


def test_frames_on_channel_after_server_close_are_ignored(rawc, witness):
    c = rawc()
    c.open_channel(1)
    c.send_method(1, raw.QUEUE_DECLARE, short(0) + shortstr(uniq("missing")) + octet(1) + table())
    m = c.read_method()
    assert m.cm == raw.CHANNEL_CLOSE
    # before answering close-ok, keep sending on that channel: must be discarded
    c.send_method(1, raw.QUEUE_DECLARE, short(0) + shortstr("") + octet(0b00100) + table())
    c.send_method(1, raw.CHANNEL_CLOSE_OK)
    c.open_channel(1)
