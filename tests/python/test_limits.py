"""Negotiated limits and message size limits."""
import pytest

from conftest import channel_error, get_message

MiB = 1024 * 1024


def test_tune_defaults_seen_by_client(conn):
    params = conn._impl.params
    assert params.frame_max == 131072
    assert params.channel_max == 2047
    assert params.heartbeat == 60


@pytest.mark.rabbit4
def test_message_over_16_mib_refused(conn):
    # RabbitMQ 4.x default max_message_size is 16 MiB (3.x: 128 MiB).
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    size = 16 * MiB + 1

    def go():
        ch.basic_publish("", q, b"x" * size)
        ch.queue_declare("", exclusive=True)  # sync point
    code, text = channel_error(go)
    assert (code, text) == (406, "PRECONDITION_FAILED - message size %d is larger than configured "
                                 "max size %d" % (size, 16 * MiB))
    assert conn.is_open
    c2 = conn.channel()
    assert c2.queue_declare(q, passive=True).method.message_count == 0


def test_message_of_16_mib_accepted(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.confirm_delivery()
    body = b"z" * (16 * MiB)
    ch.basic_publish("", q, body)
    got = get_message(ch, q, timeout=20)[2]
    assert len(got) == len(body) and got == body


def test_many_channels(conn):
    chans = [conn.channel() for _ in range(100)]
    nums = {c.channel_number for c in chans}
    assert len(nums) == 100
    q = chans[-1].queue_declare("", exclusive=True).method.queue
    chans[0].basic_publish("", q, b"x")
    assert get_message(chans[50], q)[2] == b"x"
