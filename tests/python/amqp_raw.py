"""Tiny raw AMQP 0-9-1 frame encoder/decoder for protocol-level tests.

Only what the malformed-input tests need: build frames byte by byte, do the
connection handshake by hand and read back what the server sends
(connection.close / channel.close with reply code and text, or EOF).
"""

import socket
import struct
import time

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"

# (class_id, method_id) pairs used here
CONNECTION_START = (10, 10)
CONNECTION_START_OK = (10, 11)
CONNECTION_TUNE = (10, 30)
CONNECTION_TUNE_OK = (10, 31)
CONNECTION_OPEN = (10, 40)
CONNECTION_OPEN_OK = (10, 41)
CONNECTION_CLOSE = (10, 50)
CONNECTION_CLOSE_OK = (10, 51)
CHANNEL_OPEN = (20, 10)
CHANNEL_OPEN_OK = (20, 11)
CHANNEL_CLOSE = (20, 40)
CHANNEL_CLOSE_OK = (20, 41)
QUEUE_DECLARE = (50, 10)
QUEUE_DECLARE_OK = (50, 11)
BASIC_PUBLISH = (60, 40)


# ---------------------------------------------------------------- encoding
def octet(v):
    return struct.pack(">B", v)


def short(v):
    return struct.pack(">H", v)


def long_(v):
    return struct.pack(">I", v)


def longlong(v):
    return struct.pack(">Q", v)


def shortstr(s):
    if isinstance(s, str):
        s = s.encode()
    assert len(s) < 256
    return octet(len(s)) + s


def longstr(s):
    if isinstance(s, str):
        s = s.encode()
    return long_(len(s)) + s


def table(d=None):
    """Encode a field table; values may be str/bytes (longstr), bool or int (signed 32)."""
    body = b""
    for k, v in (d or {}).items():
        body += shortstr(k)
        if isinstance(v, bool):
            body += b"t" + octet(1 if v else 0)
        elif isinstance(v, int):
            body += b"I" + struct.pack(">i", v)
        elif isinstance(v, dict):
            body += b"F" + table(v)
        else:
            body += b"S" + longstr(v)
    return long_(len(body)) + body


def frame(ftype, channel, payload, end=FRAME_END):
    return octet(ftype) + short(channel) + long_(len(payload)) + payload + octet(end)


def method_payload(cm, args=b""):
    return short(cm[0]) + short(cm[1]) + args


def method_frame(channel, cm, args=b"", end=FRAME_END):
    return frame(FRAME_METHOD, channel, method_payload(cm, args), end)


def header_frame(channel, body_size, class_id=60, flags=0, props=b""):
    return frame(FRAME_HEADER, channel,
                 short(class_id) + short(0) + longlong(body_size) + short(flags) + props)


def body_frame(channel, body):
    return frame(FRAME_BODY, channel, body)


def heartbeat_frame(channel=0):
    return frame(FRAME_HEARTBEAT, channel, b"")


# ---------------------------------------------------------------- decoding
class Closed(Exception):
    """The peer closed the TCP connection."""


class Method:
    def __init__(self, channel, class_id, method_id, args):
        self.channel = channel
        self.class_id = class_id
        self.method_id = method_id
        self.args = args

    @property
    def cm(self):
        return (self.class_id, self.method_id)

    def close_fields(self):
        """Decode connection.close / channel.close arguments."""
        a = self.args
        code = struct.unpack(">H", a[0:2])[0]
        n = a[2]
        text = a[3:3 + n].decode("utf-8", "replace")
        cls, meth = struct.unpack(">HH", a[3 + n:7 + n])
        return code, text, cls, meth

    def __repr__(self):
        return "Method(ch=%d, %d.%d, %r)" % (self.channel, self.class_id, self.method_id, self.args[:60])


class RawConnection:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.frame_max = 131072

    # -- io
    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out waiting for %d bytes (have %d)" % (n, len(self.buf)))
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed("connection closed by peer (buffered %r)" % self.buf)
            self.buf += chunk

    def recv_exact(self, n, timeout=5.0):
        self._fill(n, time.monotonic() + timeout)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        self._fill(7, deadline)
        ftype, channel, size = struct.unpack(">BHI", self.buf[:7])
        self._fill(7 + size + 1, deadline)
        payload = self.buf[7:7 + size]
        end = self.buf[7 + size]
        self.buf = self.buf[8 + size:]
        assert end == FRAME_END, "bad frame end from server: %r" % end
        return ftype, channel, payload

    def read_method(self, timeout=5.0, skip_heartbeats=True):
        deadline = time.monotonic() + timeout
        while True:
            ftype, channel, payload = self.read_frame(max(0.01, deadline - time.monotonic()))
            if ftype == FRAME_HEARTBEAT and skip_heartbeats:
                continue
            assert ftype == FRAME_METHOD, "expected method frame, got type %d payload %r" % (ftype, payload)
            cls, meth = struct.unpack(">HH", payload[:4])
            return Method(channel, cls, meth, payload[4:])

    def expect(self, cm, channel=None, timeout=5.0):
        m = self.read_method(timeout)
        assert m.cm == cm, "expected %r, got %r" % (cm, m)
        if channel is not None:
            assert m.channel == channel
        return m

    def read_until_eof(self, timeout=5.0):
        """Read (and discard) until the server closes the socket; returns the bytes read."""
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("server did not close the connection")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- protocol helpers
    def send_method(self, channel, cm, args=b""):
        self.send(method_frame(channel, cm, args))

    def handshake(self, user="guest", password="guest", vhost="/", frame_max=None,
                  channel_max=None, heartbeat=0, capabilities=None):
        """Open the connection by hand. frame_max / channel_max default to the
        values the server proposes in connection.tune."""
        self.send(PROTOCOL_HEADER)
        self.expect(CONNECTION_START, channel=0)
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        if capabilities is None:
            capabilities = {"authentication_failure_close": True, "consumer_cancel_notify": True,
                            "publisher_confirms": True, "basic.nack": True,
                            "exchange_exchange_bindings": True, "connection.blocked": True}
        client_props = table({"product": "warren-raw-test", "capabilities": capabilities})
        self.send_method(0, CONNECTION_START_OK,
                         client_props + shortstr("PLAIN") + longstr(response) + shortstr("en_US"))
        tune = self.expect(CONNECTION_TUNE, channel=0)
        srv_channel_max, srv_frame_max, srv_heartbeat = struct.unpack(">HIH", tune.args[:8])
        self.server_tune = (srv_channel_max, srv_frame_max, srv_heartbeat)
        if frame_max is None:
            frame_max = srv_frame_max
        if channel_max is None:
            channel_max = srv_channel_max
        self.frame_max = frame_max
        self.send_method(0, CONNECTION_TUNE_OK, short(channel_max) + long_(frame_max) + short(heartbeat))
        self.send_method(0, CONNECTION_OPEN, shortstr(vhost) + shortstr("") + octet(0))
        self.expect(CONNECTION_OPEN_OK, channel=0)

    def open_channel(self, channel):
        self.send_method(channel, CHANNEL_OPEN, shortstr(""))
        self.expect(CHANNEL_OPEN_OK, channel=channel)

    def expect_connection_close(self, timeout=5.0):
        """Wait for connection.close from the server (skipping other frames); answer
        close-ok; return (code, text, class_id, method_id)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.read_method(max(0.01, deadline - time.monotonic()))
            if m.cm == CONNECTION_CLOSE:
                assert m.channel == 0, "connection.close on channel %d" % m.channel
                fields = m.close_fields()
                try:
                    self.send_method(0, CONNECTION_CLOSE_OK)
                except OSError:
                    pass
                return fields

    def expect_channel_close(self, channel, timeout=5.0):
        m = self.read_method(timeout)
        assert m.cm == CHANNEL_CLOSE and m.channel == channel, "expected channel.close, got %r" % m
        fields = m.close_fields()
        self.send_method(channel, CHANNEL_CLOSE_OK)
        return fields
