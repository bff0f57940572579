"""AMQP transactions (tx.select / tx.commit / tx.rollback) over publishes and acks."""
from conftest import uniq, drain, channel_error, wait_for, get_message


def _count(conn, q):
    return conn.channel().queue_declare(q, passive=True).method.message_count


def test_publishes_invisible_until_commit(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"1")
    ch.basic_publish("", q, b"2")
    assert _count(conn, q) == 0
    assert conn.channel().basic_get(q)[0] is None
    ch.tx_commit()
    # commit-ok is only sent once the messages are enqueued
    assert _count(conn, q) == 2
    assert drain(ch, q, expected=2) == [b"1", b"2"]


def test_rollback_discards_publishes(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    ch.basic_publish("", q, b"gone")
    ch.tx_rollback()
    ch.basic_publish("", q, b"kept")
    ch.tx_commit()
    assert drain(ch, q, expected=1) == [b"kept"]
    assert drain(ch, q) == []


def test_transaction_continues_after_commit(conn):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.tx_select()
    for i in range(3):
        ch.basic_publish("", q, b"%d" % i)
        ch.tx_commit()
        assert _count(conn, q) == i + 1
    ch.basic_publish("", q, b"never")
    ch.close()  # closing with an open transaction discards it
    assert _count(conn, q) == 3


def test_acks_in_transaction_commit(conn):
    setup = conn.channel()
    q = setup.queue_declare("", exclusive=True).method.queue
    setup.confirm_delivery()
    for i in range(3):
        setup.basic_publish("", q, b"%d" % i)
    ch = conn.channel()
    ch.tx_select()
    tags = [get_message(ch, q, auto_ack=False)[0].delivery_tag for _ in range(3)]
    ch.basic_ack(tags[0])
    ch.basic_ack(tags[1])
    ch.tx_commit()
    ch.close()  # the uncommitted-but-unacked third one goes back
    m, p, body = get_message(setup, q)
    assert body == b"2"
    assert m.redelivered is True
    assert drain(setup, q) == []


def test_acks_in_transaction_rollback(conn):
    setup = conn.channel()
    q = setup.queue_declare("", exclusive=True).method.queue
    setup.confirm_delivery()
    setup.basic_publish("", q, b"a")
    setup.basic_publish("", q, b"b")
    ch = conn.channel()
    ch.tx_select()
    m1 = get_message(ch, q, auto_ack=False)[0]
    m2 = get_message(ch, q, auto_ack=False)[0]
    ch.basic_ack(m1.delivery_tag)
    ch.tx_rollback()
    # rolled-back acks are forgotten: the messages stay unacked (not requeued)
    assert _count(conn, q) == 0
    ch.basic_ack(m2.delivery_tag, multiple=True)  # acks both a and b
    ch.tx_commit()
    ch.close()
    assert _count(conn, q) == 0
    assert drain(setup, q) == []


def test_reject_requeue_in_transaction(conn):
    setup = conn.channel()
    q = setup.queue_declare("", exclusive=True).method.queue
    setup.confirm_delivery()
    setup.basic_publish("", q, b"r")
    ch = conn.channel()
    ch.tx_select()
    m = get_message(ch, q, auto_ack=False)[0]
    ch.basic_reject(m.delivery_tag, requeue=True)
    assert _count(conn, q) == 0
    ch.tx_commit()
    assert wait_for(lambda: _count(conn, q) == 1, 5)
    m, p, body = get_message(setup, q)
    assert body == b"r" and m.redelivered is True


def test_mandatory_return_in_transaction(conn):
    ch = conn.channel()
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m.reply_code, m.reply_text, b)))
    ch.tx_select()
    ch.basic_publish("", uniq("noq"), b"ret", mandatory=True)
    ch.tx_commit()
    conn.process_data_events(time_limit=0)
    assert returned == [(312, "NO_ROUTE", b"ret")]


def test_commit_without_select(conn):
    code, text = channel_error(conn.channel().tx_commit)
    assert (code, text) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_rollback_without_select(conn):
    code, text = channel_error(conn.channel().tx_rollback)
    assert (code, text) == (406, "PRECONDITION_FAILED - channel is not transactional")


def test_confirm_after_tx_select(conn):
    ch = conn.channel()
    ch.tx_select()
    code, text = channel_error(ch.confirm_delivery)
    assert (code, text) == (406, "PRECONDITION_FAILED - cannot switch from tx to confirm mode")


def test_tx_select_after_confirm(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    code, text = channel_error(ch.tx_select)
    assert (code, text) == (406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")


def test_tx_select_twice_is_ok(conn):
    ch = conn.channel()
    ch.tx_select()
    ok = ch.tx_select()
    assert ok.method.NAME == "Tx.SelectOk"
