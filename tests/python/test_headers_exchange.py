"""Headers exchange: x-match all / any / all-with-x / any-with-x."""
import pika
import pytest

from conftest import uniq, drain

# (binding arguments, message headers or None, should match)
TABLE = [
    # all (also the default when x-match is absent)
    ({"x-match": "all", "a": "1", "b": "2"}, {"a": "1", "b": "2"}, True),
    ({"x-match": "all", "a": "1", "b": "2"}, {"a": "1", "b": "2", "c": "3"}, True),
    ({"x-match": "all", "a": "1", "b": "2"}, {"a": "1"}, False),
    ({"x-match": "all", "a": "1", "b": "2"}, {"a": "1", "b": "3"}, False),
    ({"x-match": "all", "a": "1"}, None, False),
    ({"a": "1", "b": "2"}, {"a": "1", "b": "2"}, True),     # default is all
    ({"a": "1", "b": "2"}, {"a": "1"}, False),
    ({"x-match": "all"}, {"anything": "x"}, True),          # no conditions: matches all
    ({"x-match": "all"}, None, True),
    ({"x-match": "all", "n": 42}, {"n": 42}, True),          # integer values
    ({"x-match": "all", "n": 42}, {"n": 43}, False),
    ({"x-match": "all", "n": 42}, {"n": "42"}, False),       # int is not a string
    ({"x-match": "all", "f": True}, {"f": True}, True),
    ({"x-match": "all", "f": True}, {"f": False}, False),
    ({"x-match": "all", "A": "1"}, {"a": "1"}, False),       # keys are case sensitive
    # any
    ({"x-match": "any", "a": "1", "b": "2"}, {"a": "1"}, True),
    ({"x-match": "any", "a": "1", "b": "2"}, {"b": "2"}, True),
    ({"x-match": "any", "a": "1", "b": "2"}, {"a": "x", "b": "y"}, False),
    ({"x-match": "any", "a": "1", "b": "2"}, {"c": "1"}, False),
    ({"x-match": "any", "a": "1"}, None, False),
    ({"x-match": "any"}, {"a": "1"}, False),                 # no conditions: matches nothing
    # x- prefixed binding arguments are ignored by all/any
    ({"x-match": "all", "x-foo": "bar"}, {"a": "1"}, True),
    ({"x-match": "all", "x-foo": "bar", "a": "1"}, {"a": "1"}, True),
    ({"x-match": "all", "x-foo": "bar", "a": "1"}, {"a": "1", "x-foo": "other"}, True),
    ({"x-match": "any", "x-foo": "bar"}, {"x-foo": "bar"}, False),
    ({"x-match": "any", "x-foo": "bar", "a": "1"}, {"x-foo": "bar"}, False),
    ({"x-match": "any", "x-foo": "bar", "a": "1"}, {"a": "1"}, True),
    # ...but not by all-with-x / any-with-x
    ({"x-match": "all-with-x", "x-foo": "bar"}, {"x-foo": "bar"}, True),
    ({"x-match": "all-with-x", "x-foo": "bar"}, {"a": "1"}, False),
    ({"x-match": "all-with-x", "x-foo": "bar", "a": "1"}, {"a": "1", "x-foo": "bar"}, True),
    ({"x-match": "all-with-x", "x-foo": "bar", "a": "1"}, {"a": "1", "x-foo": "baz"}, False),
    ({"x-match": "all-with-x", "a": "1"}, {"a": "1"}, True),
    ({"x-match": "any-with-x", "x-foo": "bar"}, {"x-foo": "bar"}, True),
    ({"x-match": "any-with-x", "x-foo": "bar", "a": "1"}, {"x-foo": "nope", "a": "1"}, True),
    ({"x-match": "any-with-x", "x-foo": "bar", "a": "1"}, {"x-foo": "nope"}, False),
    ({"x-match": "any-with-x", "x-foo": "bar"}, None, False),
    # a binding argument without a value (void) only requires presence
    ({"x-match": "all", "a": None}, {"a": "whatever"}, True),
    ({"x-match": "all", "a": None}, {"b": "1"}, False),
    ({"x-match": "any", "a": None, "b": "2"}, {"a": 7}, True),
]


@pytest.fixture(scope="module")
def hch(broker):
    conn = broker.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()


@pytest.mark.parametrize("args,headers,matches", TABLE, ids=[str(i) for i in range(len(TABLE))])
def test_headers_match(hch, args, headers, matches):
    ch = hch
    x = uniq("hdrs")
    ch.exchange_declare(x, "headers", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="ignored", arguments=args)
    props = pika.BasicProperties(headers=headers)
    if matches:
        ch.basic_publish(x, "any-key", b"m", props, mandatory=True)
        assert drain(ch, q, expected=1) == [b"m"]
    else:
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish(x, "any-key", b"m", props, mandatory=True)
        assert drain(ch, q) == []
    ch.queue_delete(q)


def test_headers_routing_key_is_irrelevant(hch):
    ch = hch
    x = uniq("hdrs")
    ch.exchange_declare(x, "headers", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, routing_key="k1", arguments={"x-match": "all", "a": "1"})
    ch.basic_publish(x, "totally-different", b"m", pika.BasicProperties(headers={"a": "1"}),
                     mandatory=True)
    assert drain(ch, q, expected=1) == [b"m"]
    ch.queue_delete(q)


def test_same_queue_bound_with_different_args_gets_one_copy(hch):
    ch = hch
    x = uniq("hdrs")
    ch.exchange_declare(x, "headers", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, x, arguments={"x-match": "all", "a": "1"})
    ch.queue_bind(q, x, arguments={"x-match": "any", "b": "2"})
    ch.basic_publish(x, "", b"m", pika.BasicProperties(headers={"a": "1", "b": "2"}))
    assert drain(ch, q, expected=1) == [b"m"]
    assert drain(ch, q) == []
    ch.queue_delete(q)


def test_unbind_with_matching_arguments(hch):
    ch = hch
    x = uniq("hdrs")
    ch.exchange_declare(x, "headers")
    q = ch.queue_declare("", exclusive=True).method.queue
    args = {"x-match": "any", "a": "1"}
    ch.queue_bind(q, x, arguments=args)
    ch.queue_unbind(q, x, arguments=args)
    with pytest.raises(pika.exceptions.UnroutableError):
        ch.basic_publish(x, "", b"m", pika.BasicProperties(headers={"a": "1"}), mandatory=True)
    ch.exchange_delete(x)
    ch.queue_delete(q)


def test_invalid_x_match_value(broker, connect):
    c = connect()
    ch = c.channel()
    x = uniq("hdrs")
    ch.exchange_declare(x, "headers", auto_delete=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind(q, x, arguments={"x-match": "foo", "a": "1"})
    assert e.value.reply_code == 406
    assert e.value.reply_text == ('PRECONDITION_FAILED - Invalid x-match field value <<"foo">>; '
                                  'expected all, any, all-with-x, or any-with-x')
    ch = c.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_bind(q, x, arguments={"x-match": 5, "a": "1"})
    assert e.value.reply_code == 406
    assert e.value.reply_text == ("PRECONDITION_FAILED - Invalid x-match field type signedint "
                                  "(value 5); expected longstr")
    c.channel().exchange_delete(x)


def test_amq_match_exists(hch):
    ch = hch
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.match", arguments={"x-match": "all", "qname": q})
    ch.basic_publish("amq.match", "", b"m", pika.BasicProperties(headers={"qname": q}))
    assert drain(ch, q, expected=1) == [b"m"]
    ch.queue_unbind(q, "amq.match", arguments={"x-match": "all", "qname": q})
    ch.queue_delete(q)
