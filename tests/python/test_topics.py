"""Tutorial 5: topic exchange wildcard matching (`*` = exactly one word,
`#` = zero or more words; words are separated by '.')."""
import pika
import pytest

from conftest import uniq, drain

# (binding pattern, routing key, should match)
TABLE = [
    ("a.b", "a.b", True),
    ("a.b", "a.b.c", False),
    ("a.b", "a", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.*", "a.", True),          # empty last word is a word
    ("a.*", "b.a", False),
    ("a.#", "a", True),           # '#' matches zero words
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "ab", False),
    ("a.#", "b.a", False),
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", "..", True),
    ("*", "a", True),
    ("*", "", False),             # the empty key has zero words
    ("*.#", "", False),
    ("#.*", "", False),
    ("*", "a.b", False),
    ("*.b.*", "a.b.c", True),
    ("*.b.*", "b.c", False),
    ("*.b.*", "a.b", False),
    ("*.b.*", "a.b.c.d", False),
    ("*.b.*", ".b.", True),
    ("#.c", "c", True),
    ("#.c", "a.c", True),
    ("#.c", "a.b.c", True),
    ("#.c", "a.c.d", False),
    ("#.c", "ac", False),
    ("a.#.c", "a.c", True),
    ("a.#.c", "a.b.c", True),
    ("a.#.c", "a.b.b.c", True),
    ("a.#.c", "a.b.c.d", False),
    ("a.#.c", "a.c.c", True),
    ("a.#.c", "ac", False),
    ("", "", True),               # empty pattern matches only the empty key
    ("", "a", False),
    ("a..b", "a..b", True),       # empty words are words
    ("a..b", "a.b", False),
    ("a.*.b", "a..b", True),
    ("a.#.b", "a..b", True),
    ("a.#.b", "a.b", True),
    ("#.#", "", True),
    ("#.#", "a.b", True),
    ("*.#", "a", True),
    ("#.*", "a.b.c", True),
    ("*.*", "a", False),
    ("*.*", "a.b", True),
    ("*.*", ".", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("a.*.#", "a.b.c.d", True),
    ("#.b.#", "b", True),
    ("#.b.#", "a.b.c", True),
    ("#.b.#", "a.c", False),
    ("lazy.#", "lazy.orange.male.rabbit", True),
    ("*.orange.*", "quick.orange.rabbit", True),
    ("*.*.rabbit", "quick.orange.rabbit", True),
    ("*.*.rabbit", "lazy.orange.new.rabbit", False),
    ("*.orange.*", "quick.orange.male.rabbit", False),
    ("A.b", "a.b", False),        # case sensitive
    ("a.b#", "a.b#", True),       # '#' inside a word is a literal character
    ("a.b#", "a.bc", False),
    ("a.b*", "a.b*", True),       # '*' inside a word is a literal character
    ("a.b*", "a.bc", False),
]


@pytest.fixture(scope="module")
def topic_conn(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()


@pytest.mark.parametrize("pattern,key,matches", TABLE,
                         ids=["%r~%r" % (p, k) for p, k, _ in TABLE])
def test_topic_match(topic_conn, pattern, key, matches):
    ch = topic_conn
    x = uniq("topic")
    ch.exchange_declare(x, "topic", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key=pattern)
    body = ("%s|%s" % (pattern, key)).encode()
    # mandatory + confirms: an unroutable message comes back as basic.return
    if matches:
        ch.basic_publish(x, key, body, mandatory=True)
        assert drain(ch, q, expected=1) == [body]
    else:
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish(x, key, body, mandatory=True)
        assert drain(ch, q) == []
    ch.queue_delete(q)


def test_topic_multiple_matching_bindings_deliver_once(ch):
    x = uniq("topic")
    ch.exchange_declare(x, "topic")
    q = ch.queue_declare("", exclusive=True).method.queue
    for p in ("a.*", "a.#", "#", "*.b", "a.b"):
        ch.queue_bind(q, x, routing_key=p)
    ch.confirm_delivery()
    ch.basic_publish(x, "a.b", b"once")
    assert drain(ch, q, expected=1) == [b"once"]
    assert drain(ch, q) == []
    ch.exchange_delete(x)


def test_amq_topic_exists(ch):
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", routing_key=q + ".#")
    ch.confirm_delivery()
    ch.basic_publish("amq.topic", q + ".x.y", b"t")
    assert drain(ch, q, expected=1) == [b"t"]
