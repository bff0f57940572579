"""Management HTTP API (RabbitMQ management plugin compatible), black box.

Every expectation was checked against RabbitMQ 3.10.8 first.  Things a
reimplementation easily gets wrong are called out where they are asserted:

* statistics (``messages``, ``consumers``, ``message_stats``, the connection
  and channel lists) are refreshed by RabbitMQ every 5 s, so tests poll with
  ``STATS`` as the bound instead of sleeping;
* a user without the needed tag gets **401** (not 403) with
  ``{"error": "not_authorised", ...}`` (British spelling), a failed login
  401 with ``{"error": "not_authorized", "reason": "Login failed"}``;
* bodies that are not JSON get 400 ``{"error": "bad_request", "reason": "not_json"}``;
* ``user.tags`` is a JSON list in responses (a comma-separated string is
  accepted on PUT);
* ``POST .../get`` with no message properties returns ``"properties": []``
  in RabbitMQ (an empty Erlang proplist); ``{}`` is accepted as well.
"""
import base64
import json
import time
import urllib.parse

import pika
import pytest

from conftest import uniq, wait_for, get_message
from mgmt import q

pytestmark = pytest.mark.mgmt

# RabbitMQ's collect_statistics_interval is 5 s; allow a few rounds.
STATS = 20.0
NOT_FOUND = {"error": "Object Not Found", "reason": "Not Found"}
DEFAULT_EXCHANGES = {"": "direct", "amq.direct": "direct", "amq.fanout": "fanout",
                     "amq.topic": "topic", "amq.headers": "headers", "amq.match": "headers",
                     "amq.rabbitmq.trace": "topic"}


# --------------------------------------------------------------------------
# helpers

def poll(api, path, pred, timeout=STATS):
    """GET path until it answers 200 and pred(body) is truthy (bounded).
    Returns the last (status, body); the caller asserts on it."""
    last = [None]

    def attempt():
        s, b = api.get(path)
        last[0] = (s, b)
        return s == 200 and bool(pred(b))

    wait_for(attempt, timeout=timeout, interval=0.25)
    return last[0]


def put_queue(api, cleanup, vhost="/", name=None, body=None):
    name = name or uniq("mq")
    path = api.path("queues", vhost, name)
    s, b = api.put(path, {} if body is None else body)
    assert s == 201, (s, b)
    cleanup(path)
    return name, path


def put_exchange(api, cleanup, vhost="/", name=None, body=None):
    name = name or uniq("mx")
    path = api.path("exchanges", vhost, name)
    s, b = api.put(path, {"type": "direct"} if body is None else body)
    assert s == 201, (s, b)
    cleanup(path)
    return name, path


def put_user(api, cleanup, tags, password=None, name=None):
    name = name or uniq("mu")
    password = password or uniq("pw")
    path = api.path("users", name)
    s, b = api.put(path, {"password": password, "tags": tags})
    assert s == 201, (s, b)
    cleanup(path)
    return name, password


def put_vhost(api, cleanup, body=None, name=None):
    name = name or uniq("mv")
    path = api.path("vhosts", name)
    s, b = api.put(path, body)
    assert s == 201, (s, b)
    cleanup(path)
    return name


def by_name(items, name, key="name"):
    found = [i for i in items if i.get(key) == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def find_connection(api, cname, timeout=STATS):
    """The /api/connections entry of the pika connection named cname."""
    def attempt():
        s, body = api.get("/api/connections")
        assert s == 200, (s, body)
        return by_name(body, cname, "user_provided_name")
    c = wait_for(attempt, timeout=timeout, interval=0.25)
    assert c, "connection %r not listed in /api/connections within %s s" % (cname, timeout)
    return c


def passive_count(ch, queue):
    return ch.queue_declare(queue, passive=True).method.message_count


def publish(api, exchange, routing_key, payload, vhost="/", properties=None,
            payload_encoding="string"):
    return api.post(api.path("exchanges", vhost, exchange or "amq.default", "publish"),
                    {"properties": properties or {}, "routing_key": routing_key,
                     "payload": payload, "payload_encoding": payload_encoding})


def get_msgs(api, queue, count=1, ackmode="ack_requeue_false", encoding="auto",
             truncate=None, vhost="/"):
    body = {"count": count, "ackmode": ackmode, "encoding": encoding}
    if truncate is not None:
        body["truncate"] = truncate
    return api.post(api.path("queues", vhost, queue, "get"), body)


def close_pumping(conn, timeout=10.0):
    """Pump conn until the broker closes it; returns the pika exception."""
    deadline = time.monotonic() + timeout
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
    return e.value


# --------------------------------------------------------------------------
# overview, nodes, whoami

def test_overview_fields(mgmt, broker):
    s, o = mgmt.get("/api/overview")
    assert s == 200
    for k in ("management_version", "rabbitmq_version", "cluster_name", "node",
              "product_name", "product_version", "erlang_version"):
        assert isinstance(o[k], str) and o[k], k
    totals = o["object_totals"]
    for k in ("connections", "channels", "consumers", "exchanges", "queues"):
        assert isinstance(totals[k], int) and totals[k] >= 0, k
    assert totals["exchanges"] >= len(DEFAULT_EXCHANGES)  # "/" alone has 7
    assert isinstance(o["queue_totals"], (dict, list))
    assert isinstance(o["message_stats"], (dict, list))  # [] until there was traffic
    names = {t["name"] for t in o["exchange_types"]}
    assert {"direct", "fanout", "topic", "headers"} <= names
    listeners = o["listeners"]
    assert all({"node", "protocol", "ip_address", "port"} <= set(x) for x in listeners)
    amqp = [x for x in listeners if x["protocol"] == "amqp"]
    assert [x["port"] for x in amqp] == [broker.port]
    assert amqp[0]["node"] == o["node"]


def test_overview_totals_follow_queues_and_messages(mgmt, mgmt_cleanup):
    name, _ = put_queue(mgmt, mgmt_cleanup)
    s, r = publish(mgmt, "", name, "one")
    assert (s, r) == (200, {"routed": True})
    s, o = poll(mgmt, "/api/overview",
                lambda o: o["object_totals"]["queues"] >= 1
                and isinstance(o["queue_totals"], dict)
                and o["queue_totals"].get("messages", 0) >= 1
                and o["queue_totals"].get("messages_ready", 0) >= 1)
    assert s == 200
    assert o["object_totals"]["queues"] >= 1
    qt = o["queue_totals"]
    assert qt["messages"] >= 1 and qt["messages_ready"] >= 1
    assert isinstance(qt["messages_unacknowledged"], int)
    assert "rate" in qt["messages_details"]


def test_cluster_name(mgmt):
    s, o = mgmt.get("/api/overview")
    assert mgmt.get("/api/cluster-name") == (200, {"name": o["cluster_name"]})


def test_nodes(mgmt):
    s, o = mgmt.get("/api/overview")
    s, nodes = mgmt.get("/api/nodes")
    assert s == 200 and isinstance(nodes, list) and nodes
    node = by_name(nodes, o["node"])
    assert node is not None, nodes
    assert node["running"] is True
    assert node["type"] == "disc"
    for k in ("mem_used", "mem_limit", "fd_used", "fd_total", "sockets_used", "proc_used",
              "proc_total", "disk_free", "disk_free_limit", "uptime", "processors"):
        assert isinstance(node[k], int) and node[k] >= 0, k
    assert node["mem_used"] > 0 and node["mem_limit"] > 0 and node["disk_free"] > 0
    assert node["mem_alarm"] is False and node["disk_free_alarm"] is False
    s, one = mgmt.get(mgmt.path("nodes", o["node"]))
    assert s == 200 and one["name"] == o["node"] and one["running"] is True


def test_whoami(mgmt, broker):
    assert mgmt.get("/api/whoami") == (200, {"name": broker.user, "tags": ["administrator"]})


# --------------------------------------------------------------------------
# connections, channels, consumers

def test_connections_list_and_show(mgmt, connect, broker):
    cname = uniq("conn")
    connect(client_properties={"connection_name": cname})
    c = find_connection(mgmt, cname)
    assert c["user"] == broker.user and c["vhost"] == "/"
    assert c["state"] == "running"
    assert c["protocol"] == "AMQP 0-9-1"
    # The listener the client reached: the broker's, or (a cluster) one of its nodes'.
    assert c["port"] in getattr(broker, "ports", [broker.port])
    assert isinstance(c["peer_port"], int) and isinstance(c["peer_host"], str)
    # the name is "<peer>:<port> -> <host>:<port>"; it is the key of /api/connections/{name}
    assert c["name"] == "%s:%d -> %s:%d" % (c["peer_host"], c["peer_port"], c["host"], c["port"])
    assert c["client_properties"]["connection_name"] == cname
    assert c["client_properties"]["product"] == "Pika Python Client Library"
    # The node the client is connected to: the broker's own, or one of the cluster's.
    assert c["node"] in [n["name"] for n in mgmt.get("/api/nodes")[1]]
    for k in ("channels", "frame_max", "channel_max", "timeout", "recv_oct", "send_oct"):
        assert isinstance(c[k], int), k
    assert c["auth_mechanism"] == "PLAIN"
    s, one = mgmt.get(mgmt.path("connections", c["name"]))
    assert s == 200
    assert one["name"] == c["name"] and one["user_provided_name"] == cname
    s, per_vhost = mgmt.get(mgmt.path("vhosts", "/", "connections"))
    assert s == 200 and by_name(per_vhost, c["name"]) is not None
    assert mgmt.get(mgmt.path("connections", uniq("no-such-conn"))) == (404, NOT_FOUND)


def test_delete_connection_closes_it(mgmt, connect):
    cname = uniq("conn")
    conn = connect(client_properties={"connection_name": cname})
    c = find_connection(mgmt, cname)
    assert mgmt.delete(mgmt.path("connections", c["name"])) == (204, None)
    e = close_pumping(conn)
    assert e.reply_code == 320
    assert e.reply_text == "CONNECTION_FORCED - Closed via management plugin"
    s, b = poll(mgmt, "/api/connections",
                lambda b: by_name(b, cname, "user_provided_name") is None)
    assert by_name(b, cname, "user_provided_name") is None
    assert mgmt.get(mgmt.path("connections", c["name"])) == (404, NOT_FOUND)
    assert mgmt.delete(mgmt.path("connections", c["name"])) == (404, NOT_FOUND)


def test_delete_connection_with_x_reason(mgmt, connect):
    cname = uniq("conn")
    conn = connect(client_properties={"connection_name": cname})
    c = find_connection(mgmt, cname)
    r = mgmt.request("DELETE", mgmt.path("connections", c["name"]),
                     headers={"X-Reason": "maintenance window"})
    assert r.status == 204
    e = close_pumping(conn)
    assert (e.reply_code, e.reply_text) == (320, "CONNECTION_FORCED - maintenance window")


def test_channels(mgmt, connect, broker):
    cname = uniq("conn")
    conn = connect(client_properties={"connection_name": cname})
    ch = conn.channel()
    ch.basic_qos(prefetch_count=7)
    ch.confirm_delivery()
    c = find_connection(mgmt, cname)

    def mine(b):
        return [x for x in b if x["connection_details"]["name"] == c["name"]]

    s, chans = poll(mgmt, "/api/channels", lambda b: mine(b) and mine(b)[0]["confirm"])
    assert s == 200
    [x] = mine(chans)
    assert x["name"] == "%s (%d)" % (c["name"], ch.channel_number)
    assert x["number"] == ch.channel_number
    assert x["user"] == broker.user and x["vhost"] == "/"
    assert x["prefetch_count"] == 7
    assert x["confirm"] is True and x["transactional"] is False
    assert x["state"] == "running"
    for k in ("consumer_count", "messages_unacknowledged", "messages_unconfirmed"):
        assert isinstance(x[k], int), k
    assert x["connection_details"]["peer_port"] == c["peer_port"]
    s, one = mgmt.get(mgmt.path("channels", x["name"]))
    assert s == 200 and one["name"] == x["name"] and one["prefetch_count"] == 7
    s, on_conn = mgmt.get(mgmt.path("connections", c["name"], "channels"))
    assert s == 200 and [y["name"] for y in on_conn] == [x["name"]]
    s, per_vhost = mgmt.get(mgmt.path("vhosts", "/", "channels"))
    assert s == 200 and by_name(per_vhost, x["name"]) is not None
    assert mgmt.get(mgmt.path("channels", uniq("no-such-channel"))) == (404, NOT_FOUND)


def test_consumers(mgmt, mgmt_cleanup, conn, broker):
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=5)
    tag = uniq("ctag")
    ch.basic_consume(queue, lambda *a: None, consumer_tag=tag)

    def mine(b):
        return [x for x in b if x["consumer_tag"] == tag]

    s, cons = poll(mgmt, "/api/consumers", mine)
    assert s == 200
    [x] = mine(cons)
    assert x["queue"] == {"name": queue, "vhost": "/"}
    assert x["ack_required"] is True and x["exclusive"] is False
    assert x["prefetch_count"] == 5
    assert x["arguments"] == {}
    assert x["channel_details"]["number"] == ch.channel_number
    assert x["channel_details"]["user"] == broker.user
    s, per_vhost = mgmt.get(mgmt.path("consumers", "/"))
    assert s == 200 and mine(per_vhost)
    s, qinfo = poll(mgmt, mgmt.path("queues", "/", queue), lambda b: b.get("consumers") == 1)
    assert qinfo["consumers"] == 1
    assert [d["consumer_tag"] for d in qinfo["consumer_details"]] == [tag]


# --------------------------------------------------------------------------
# exchanges

def test_exchanges_list_has_the_predeclared_ones(mgmt):
    for path in ("/api/exchanges", mgmt.path("exchanges", "/")):
        s, xs = mgmt.get(path)
        assert s == 200
        mine = {x["name"]: x for x in xs if x["vhost"] == "/"}
        for name, typ in DEFAULT_EXCHANGES.items():
            assert mine[name]["type"] == typ, name
            assert mine[name]["durable"] is True, name
        assert mine["amq.rabbitmq.trace"]["internal"] is True
        assert mine["amq.direct"]["internal"] is False
    # the default exchange is addressed as amq.default and named ""
    s, x = mgmt.get(mgmt.path("exchanges", "/", "amq.default"))
    assert s == 200 and x["name"] == "" and x["type"] == "direct" and x["vhost"] == "/"


def test_exchange_declare_get_delete(mgmt, mgmt_cleanup, ch):
    name = uniq("mx")
    path = mgmt.path("exchanges", "/", name)
    mgmt_cleanup(path)
    body = {"type": "topic", "durable": False, "auto_delete": False, "internal": False,
            "arguments": {"alternate-exchange": "amq.fanout"}}
    assert mgmt.put(path, body) == (201, None)
    assert mgmt.put(path, body) == (204, None)  # idempotent redeclare
    s, x = mgmt.get(path)
    assert s == 200
    assert {k: x[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal",
                              "arguments")} == {
        "name": name, "vhost": "/", "type": "topic", "durable": False, "auto_delete": False,
        "internal": False, "arguments": {"alternate-exchange": "amq.fanout"}}
    s, xs = mgmt.get(mgmt.path("exchanges", "/"))
    assert by_name(xs, name) is not None
    # visible to AMQP: an equivalent passive declare succeeds
    ch.exchange_declare(name, passive=True)
    assert mgmt.delete(path) == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(path) == (404, NOT_FOUND)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare(name, passive=True)
    assert e.value.reply_code == 404


def test_exchange_declare_defaults(mgmt, mgmt_cleanup):
    name, path = put_exchange(mgmt, mgmt_cleanup, body={"type": "fanout"})
    s, x = mgmt.get(path)
    # the AMQP defaults (the web UI pre-ticks "durable", the API does not)
    assert (x["type"], x["durable"], x["auto_delete"], x["internal"], x["arguments"]) == \
        ("fanout", False, False, False, {})


def test_exchange_declare_errors(mgmt, mgmt_cleanup):
    name, path = put_exchange(mgmt, mgmt_cleanup, body={"type": "topic"})
    s, b = mgmt.put(path, {"type": "direct"})
    assert s == 400
    assert b == {"error": "bad_request",
                 "reason": "inequivalent arg 'type' for exchange '%s' in vhost '/': "
                           "received 'direct' but current is 'topic'" % name}
    s, b = mgmt.put(mgmt.path("exchanges", "/", uniq("mx")), {"type": "no-such-type"})
    assert s == 400 and b == {"error": "bad_request",
                              "reason": "unknown exchange type 'no-such-type'"}
    # amq.* names are reserved: 401 not_authorised "Access refused."
    s, b = mgmt.put(mgmt.path("exchanges", "/", "amq." + uniq("x")), {"type": "direct"})
    assert (s, b) == (401, {"error": "not_authorised", "reason": "Access refused."})
    s, b = mgmt.put(mgmt.path("exchanges", uniq("no-such-vhost"), uniq("mx")), {"type": "direct"})
    assert (s, b) == (404, {"error": "not_found", "reason": "vhost_not_found"})


def test_exchange_delete_if_unused(mgmt, mgmt_cleanup):
    name, path = put_exchange(mgmt, mgmt_cleanup)
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    r = mgmt.request("POST", mgmt.path("bindings", "/", "e", name, "q", queue), {"routing_key": "k"})
    assert r.status == 201
    s, b = mgmt.delete(path + "?if-unused=true")
    assert (s, b) == (400, {"error": "bad_request",
                            "reason": "exchange '%s' in vhost '/' in use" % name})
    assert mgmt.get(path)[0] == 200
    assert mgmt.delete(mgmt.path("bindings", "/", "e", name, "q", queue, "k")) == (204, None)
    assert mgmt.delete(path + "?if-unused=true") == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)


def test_exchange_publish_routed(mgmt, mgmt_cleanup, ch):
    x, _ = put_exchange(mgmt, mgmt_cleanup, body={"type": "direct"})
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    ch.queue_bind(queue, x, "rk")
    props = {"content_type": "text/plain", "delivery_mode": 2, "priority": 4,
             "message_id": "mid-1", "headers": {"k": "v", "n": 2, "b": True}}
    assert publish(mgmt, x, "rk", "hello", properties=props) == (200, {"routed": True})
    assert publish(mgmt, x, "other", "lost") == (200, {"routed": False})
    m, p, body = get_message(ch, queue)
    assert body == b"hello"
    assert (m.exchange, m.routing_key) == (x, "rk")
    assert (p.content_type, p.delivery_mode, p.priority, p.message_id) == \
        ("text/plain", 2, 4, "mid-1")
    assert p.headers == {"k": "v", "n": 2, "b": True}
    assert ch.basic_get(queue, auto_ack=True) == (None, None, None)  # "lost" was not routed


def test_exchange_publish_default_exchange_and_base64(mgmt, mgmt_cleanup, ch):
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    raw = b"\x00\xff\x01binary"
    assert publish(mgmt, "amq.default", queue, base64.b64encode(raw).decode(),
                   payload_encoding="base64") == (200, {"routed": True})
    assert publish(mgmt, "amq.default", queue, "h\u00e9") == (200, {"routed": True})
    m, p, body = get_message(ch, queue)
    assert (m.exchange, m.routing_key, body) == ("", queue, raw)
    m, p, body = get_message(ch, queue)
    assert body == "h\u00e9".encode()


def test_exchange_publish_errors(mgmt, mgmt_cleanup):
    x, path = put_exchange(mgmt, mgmt_cleanup)
    # only POST is routed (the docs heading says PUT)
    s, b = mgmt.put(path + "/publish", {"properties": {}, "routing_key": "k", "payload": "x",
                                        "payload_encoding": "string"})
    assert s == 405
    missing = uniq("no-such-x")
    s, b = publish(mgmt, missing, "k", "x")
    assert s == 400 and b == {"error": "bad_request",
                              "reason": "404 NOT_FOUND - no exchange '%s' in vhost '/'" % missing}
    s, b = mgmt.post(path + "/publish", {"routing_key": "k", "payload": "x"})
    assert s == 400 and b["error"] == "bad_request"


# --------------------------------------------------------------------------
# queues

QUEUE_FIELDS = ("name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "type",
                "node")


def test_queue_declare_and_show(mgmt, mgmt_cleanup, ch):
    name = uniq("mq")
    path = mgmt.path("queues", "/", name)
    mgmt_cleanup(path)
    body = {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 10}}
    assert mgmt.put(path, body) == (201, None)
    assert mgmt.put(path, body) == (204, None)
    node = mgmt.get("/api/overview")[1]["node"]
    s, qi = mgmt.get(path)
    assert s == 200
    assert {k: qi[k] for k in QUEUE_FIELDS} == {
        "name": name, "vhost": "/", "durable": True, "auto_delete": False, "exclusive": False,
        "arguments": {"x-max-length": 10}, "type": "classic", "node": node}
    # the counters appear with the first statistics round
    s, qi = poll(mgmt, path, lambda b: "messages" in b and "state" in b)
    assert (qi["messages"], qi["messages_ready"], qi["messages_unacknowledged"],
            qi["consumers"], qi["state"]) == (0, 0, 0, 0, "running")
    for listing in ("/api/queues", mgmt.path("queues", "/")):
        s, qs = mgmt.get(listing)
        assert s == 200
        entry = by_name([x for x in qs if x["vhost"] == "/"], name)
        assert entry is not None and entry["durable"] is True
    assert passive_count(ch, name) == 0


def test_queue_declare_defaults_and_auto_delete(mgmt, mgmt_cleanup):
    name, path = put_queue(mgmt, mgmt_cleanup)
    s, qi = mgmt.get(path)
    assert (qi["durable"], qi["auto_delete"], qi["exclusive"], qi["arguments"]) == \
        (False, False, False, {})  # AMQP defaults
    name2, path2 = put_queue(mgmt, mgmt_cleanup, body={"durable": False, "auto_delete": True})
    s, qi = mgmt.get(path2)
    assert (qi["durable"], qi["auto_delete"]) == (False, True)


def test_queue_quorum_type(mgmt, mgmt_cleanup):
    name, path = put_queue(mgmt, mgmt_cleanup,
                           body={"durable": True, "arguments": {"x-queue-type": "quorum"}})
    s, qi = mgmt.get(path)
    assert s == 200 and qi["type"] == "quorum" and qi["durable"] is True
    assert qi["arguments"] == {"x-queue-type": "quorum"}


def test_queue_exclusive_declared_over_amqp(mgmt, ch):
    name = ch.queue_declare("", exclusive=True).method.queue
    s, qi = mgmt.get(mgmt.path("queues", "/", name))
    assert s == 200
    assert (qi["name"], qi["exclusive"], qi["auto_delete"], qi["durable"]) == \
        (name, True, False, False)


def test_queue_counts(mgmt, mgmt_cleanup, connect):
    name, path = put_queue(mgmt, mgmt_cleanup)
    conn = connect()
    a = conn.channel()
    for i in range(3):
        a.basic_publish("", name, b"m%d" % i)
    s, qi = poll(mgmt, path, lambda b: b.get("messages") == 3)
    assert (qi["messages"], qi["messages_ready"], qi["messages_unacknowledged"]) == (3, 3, 0)
    m, _, _ = get_message(a, name, auto_ack=False)         # 1 unacked on a
    b = conn.channel()
    b.basic_qos(prefetch_count=1)
    b.basic_consume(name, lambda *x: None)                  # 1 more unacked on b
    s, qi = poll(mgmt, path, lambda b: b.get("messages_unacknowledged") == 2
                 and b.get("consumers") == 1)
    assert (qi["messages"], qi["messages_ready"], qi["messages_unacknowledged"],
            qi["consumers"]) == (3, 1, 2, 1)
    assert isinstance(qi["message_bytes"], int) and qi["message_bytes"] == 6


def test_queue_declare_errors(mgmt, mgmt_cleanup):
    name, path = put_queue(mgmt, mgmt_cleanup, body={"durable": False})
    s, b = mgmt.put(path, {"durable": True})
    assert (s, b) == (400, {"error": "bad_request",
                            "reason": "inequivalent arg 'durable' for queue '%s' in vhost '/': "
                                      "received 'true' but current is 'false'" % name})
    s, b = mgmt.put(mgmt.path("queues", "/", "amq." + uniq("q")), {})
    assert (s, b) == (401, {"error": "not_authorised", "reason": "Access refused."})
    s, b = mgmt.put(mgmt.path("queues", uniq("no-such-vhost"), uniq("mq")), {})
    assert (s, b) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    s, b = mgmt.put(mgmt.path("queues", "/", uniq("mq")), {"durable": "yes"})
    assert s == 400 and b["error"] == "bad_request"


def test_queue_purge_and_delete_if_empty(mgmt, mgmt_cleanup, ch):
    name, path = put_queue(mgmt, mgmt_cleanup)
    for i in range(4):
        ch.basic_publish("", name, b"x")
    assert wait_for(lambda: passive_count(ch, name) == 4)
    s, b = mgmt.delete(path + "?if-empty=true")
    assert (s, b) == (400, {"error": "bad_request",
                            "reason": "queue '%s' in vhost '/' not empty" % name})
    assert mgmt.delete(path + "/contents") == (204, None)
    assert passive_count(ch, name) == 0
    assert mgmt.delete(path + "?if-empty=true") == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(path) == (404, NOT_FOUND)
    assert mgmt.delete(path + "/contents")[0] == 404


def test_queue_delete_if_unused(mgmt, mgmt_cleanup, connect):
    name, path = put_queue(mgmt, mgmt_cleanup)
    conn = connect()
    ch = conn.channel()
    tag = ch.basic_consume(name, lambda *a: None)
    s, b = mgmt.delete(path + "?if-unused=true")
    assert (s, b) == (400, {"error": "bad_request",
                            "reason": "queue '%s' in vhost '/' in use" % name})
    ch.basic_cancel(tag)
    assert mgmt.delete(path + "?if-unused=true") == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)


def test_queue_get_message_fields(mgmt, mgmt_cleanup, ch):
    name, path = put_queue(mgmt, mgmt_cleanup)
    ch.queue_bind(name, "amq.direct", name + ".rk")
    props = pika.BasicProperties(
        content_type="text/plain", content_encoding="utf-8", delivery_mode=2, priority=3,
        correlation_id="cid", reply_to="rq", expiration="60000", message_id="mid",
        timestamp=1700000000, type="tp", app_id="app",
        headers={"s": "v", "n": 1, "b": True, "l": [1, "a"], "t": {"x": 1}})
    ch.basic_publish("amq.direct", name + ".rk", "h\u00e9llo".encode(), props)
    ch.basic_publish("", name, b"second")
    assert wait_for(lambda: passive_count(ch, name) == 2)
    s, msgs = get_msgs(mgmt, name, count=5)
    assert s == 200 and len(msgs) == 2
    m = msgs[0]
    assert m == {
        "payload": "h\u00e9llo", "payload_bytes": 6, "payload_encoding": "string",
        "redelivered": False, "exchange": "amq.direct", "routing_key": name + ".rk",
        "message_count": 1,
        "properties": {
            "content_type": "text/plain", "content_encoding": "utf-8", "delivery_mode": 2,
            "priority": 3, "correlation_id": "cid", "reply_to": "rq", "expiration": "60000",
            "message_id": "mid", "timestamp": 1700000000, "type": "tp", "app_id": "app",
            "headers": {"s": "v", "n": 1, "b": True, "l": [1, "a"], "t": {"x": 1}}}}
    m2 = msgs[1]
    assert (m2["payload"], m2["exchange"], m2["routing_key"], m2["message_count"]) == \
        ("second", "", name, 0)
    assert m2["properties"] in ([], {})  # RabbitMQ: [] (empty proplist)
    assert get_msgs(mgmt, name) == (200, [])


@pytest.mark.parametrize("ackmode,stays", [
    ("ack_requeue_true", True), ("reject_requeue_true", True),
    ("ack_requeue_false", False), ("reject_requeue_false", False)])
def test_queue_get_ackmodes(mgmt, mgmt_cleanup, ch, ackmode, stays):
    name, path = put_queue(mgmt, mgmt_cleanup)
    ch.basic_publish("", name, b"m1")
    ch.basic_publish("", name, b"m2")
    assert wait_for(lambda: passive_count(ch, name) == 2)
    s, msgs = get_msgs(mgmt, name, ackmode=ackmode)
    assert s == 200
    assert [(m["payload"], m["redelivered"], m["message_count"]) for m in msgs] == \
        [("m1", False, 1)]
    want = 2 if stays else 1
    assert wait_for(lambda: passive_count(ch, name) == want), passive_count(ch, name)
    s, msgs = get_msgs(mgmt, name, count=2, ackmode="ack_requeue_false")
    if stays:  # requeued at the head, now marked redelivered
        assert [(m["payload"], m["redelivered"]) for m in msgs] == [("m1", True), ("m2", False)]
    else:
        assert [(m["payload"], m["redelivered"]) for m in msgs] == [("m2", False)]
    assert passive_count(ch, name) == 0


def test_queue_get_encoding_and_truncate(mgmt, mgmt_cleanup, ch):
    name, path = put_queue(mgmt, mgmt_cleanup)
    binary = b"\x00\xff\x01\x02"
    ch.basic_publish("", name, binary)
    ch.basic_publish("", name, b"hello world")
    assert wait_for(lambda: passive_count(ch, name) == 2)
    # auto: not valid UTF-8 -> base64
    s, [m] = get_msgs(mgmt, name, ackmode="ack_requeue_true", encoding="auto")
    assert (m["payload"], m["payload_encoding"], m["payload_bytes"]) == \
        (base64.b64encode(binary).decode(), "base64", 4)
    # truncate cuts the payload, payload_bytes stays the full size
    s, [m] = get_msgs(mgmt, name, ackmode="ack_requeue_true", encoding="auto", truncate=2)
    assert (m["payload"], m["payload_encoding"], m["payload_bytes"]) == \
        (base64.b64encode(binary[:2]).decode(), "base64", 4)
    s, [m] = get_msgs(mgmt, name, ackmode="ack_requeue_false")
    assert m["payload"] == base64.b64encode(binary).decode()
    # text: auto -> string, base64 on request, truncate
    s, [m] = get_msgs(mgmt, name, ackmode="ack_requeue_true", encoding="base64")
    assert (m["payload"], m["payload_encoding"], m["payload_bytes"]) == \
        (base64.b64encode(b"hello world").decode(), "base64", 11)
    s, [m] = get_msgs(mgmt, name, ackmode="ack_requeue_true", encoding="auto", truncate=5)
    assert (m["payload"], m["payload_encoding"], m["payload_bytes"]) == ("hello", "string", 11)
    s, [m] = get_msgs(mgmt, name, ackmode="ack_requeue_false", truncate=50000)
    assert (m["payload"], m["redelivered"]) == ("hello world", True)


def test_queue_get_errors(mgmt, mgmt_cleanup):
    name, path = put_queue(mgmt, mgmt_cleanup)
    missing = uniq("no-such-q")
    s, b = get_msgs(mgmt, missing)
    assert (s, b) == (404, {"error": "not_found",
                            "reason": "NOT_FOUND - no queue '%s' in vhost '/'" % missing})
    s, b = mgmt.post(path + "/get", {"count": 1, "ackmode": "ack_requeue_false"})
    assert s == 400 and b["error"] == "bad_request"  # encoding is mandatory


def test_queue_bindings(mgmt, mgmt_cleanup):
    name, path = put_queue(mgmt, mgmt_cleanup)
    r = mgmt.request("POST", mgmt.path("bindings", "/", "e", "amq.direct", "q", name),
                     {"routing_key": "rk", "arguments": {}})
    assert r.status == 201
    s, bs = mgmt.get(path + "/bindings")
    assert s == 200
    assert bs == [
        {"source": "", "vhost": "/", "destination": name, "destination_type": "queue",
         "routing_key": name, "arguments": {}, "properties_key": name},
        {"source": "amq.direct", "vhost": "/", "destination": name, "destination_type": "queue",
         "routing_key": "rk", "arguments": {}, "properties_key": "rk"}]


# --------------------------------------------------------------------------
# bindings

def test_binding_create_follow_location_delete(mgmt, mgmt_cleanup, ch):
    x, _ = put_exchange(mgmt, mgmt_cleanup, body={"type": "topic"})
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    post_path = mgmt.path("bindings", "/", "e", x, "q", queue)
    r = mgmt.request("POST", post_path, {"routing_key": "a.#", "arguments": {}})
    assert r.status == 201 and r.body is None
    location = r.headers.get("Location")
    assert location
    s, bs = mgmt.get(post_path)
    assert s == 200 and len(bs) == 1
    b = bs[0]
    assert {k: b[k] for k in ("source", "vhost", "destination", "destination_type",
                              "routing_key", "arguments")} == {
        "source": x, "vhost": "/", "destination": queue, "destination_type": "queue",
        "routing_key": "a.#", "arguments": {}}
    props = b["properties_key"]
    one = post_path + "/" + q(props)
    # the Location header points at the new binding (relative to the POST URL)
    assert urllib.parse.urljoin(mgmt.base_url + post_path, location) == mgmt.base_url + one
    assert mgmt.get(one) == (200, b)
    # the binding routes
    assert publish(mgmt, x, "a.b.c", "via binding") == (200, {"routed": True})
    assert get_message(ch, queue)[2] == b"via binding"
    # POSTing the same binding again is fine and does not duplicate it
    assert mgmt.request("POST", post_path, {"routing_key": "a.#"}).status == 201
    assert len(mgmt.get(post_path)[1]) == 1
    for listing in ("/api/bindings", mgmt.path("bindings", "/")):
        s, all_bs = mgmt.get(listing)
        assert s == 200 and b in all_bs
    assert mgmt.delete(one) == (204, None)
    assert mgmt.get(one) == (404, NOT_FOUND)
    assert mgmt.delete(one) == (404, NOT_FOUND)
    assert mgmt.get(post_path) == (200, [])
    assert publish(mgmt, x, "a.b.c", "nowhere") == (200, {"routed": False})


def test_binding_properties_keys(mgmt, mgmt_cleanup):
    """Several bindings between the same pair; each is addressed by its own
    properties_key (RabbitMQ: "~" for an empty key, "<rk>~<hash>" with arguments)."""
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    post_path = mgmt.path("bindings", "/", "e", "amq.direct", "q", queue)
    for body in ({"routing_key": ""}, {"routing_key": "a b/c%d"},
                 {"routing_key": "k", "arguments": {"x-any": "v"}}):
        assert mgmt.request("POST", post_path, body).status == 201
    s, bs = mgmt.get(post_path)
    assert sorted((b["routing_key"], tuple(b["arguments"].items())) for b in bs) == \
        [("", ()), ("a b/c%d", ()), ("k", (("x-any", "v"),))]
    assert len({b["properties_key"] for b in bs}) == 3
    assert by_name(bs, "", "routing_key")["properties_key"] == "~"
    for b in bs:
        assert mgmt.get(post_path + "/" + q(b["properties_key"])) == (200, b)
    for b in bs:
        assert mgmt.delete(post_path + "/" + q(b["properties_key"])) == (204, None)
    assert mgmt.get(post_path) == (200, [])


def test_binding_errors(mgmt, mgmt_cleanup):
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    nq, nx = uniq("no-such-q"), uniq("no-such-x")
    s, b = mgmt.post(mgmt.path("bindings", "/", "e", "amq.direct", "q", nq), {"routing_key": "k"})
    assert (s, b) == (404, {"error": "not_found", "reason": "no queue '%s' in vhost '/'" % nq})
    s, b = mgmt.post(mgmt.path("bindings", "/", "e", nx, "q", queue), {"routing_key": "k"})
    assert (s, b) == (404, {"error": "not_found", "reason": "no exchange '%s' in vhost '/'" % nx})
    s, b = mgmt.get(mgmt.path("bindings", "/", "e", "amq.direct", "q", queue, "nope"))
    assert (s, b) == (404, NOT_FOUND)


def test_exchange_to_exchange_binding(mgmt, mgmt_cleanup, ch):
    src, _ = put_exchange(mgmt, mgmt_cleanup, body={"type": "topic"})
    dst, _ = put_exchange(mgmt, mgmt_cleanup, body={"type": "fanout"})
    queue, _ = put_queue(mgmt, mgmt_cleanup)
    ch.queue_bind(queue, dst, "")
    post_path = mgmt.path("bindings", "/", "e", src, "e", dst)
    r = mgmt.request("POST", post_path, {"routing_key": "k.*", "arguments": {}})
    assert r.status == 201 and r.headers.get("Location")
    s, [expected] = mgmt.get(post_path)
    # properties_key is opaque (RabbitMQ: the url-encoded key, here "k.%2A")
    assert expected == {"source": src, "vhost": "/", "destination": dst,
                        "destination_type": "exchange", "routing_key": "k.*", "arguments": {},
                        "properties_key": expected["properties_key"]}
    assert mgmt.get(mgmt.path("exchanges", "/", src, "bindings", "source")) == (200, [expected])
    assert mgmt.get(mgmt.path("exchanges", "/", src, "bindings", "destination")) == (200, [])
    s, dst_in = mgmt.get(mgmt.path("exchanges", "/", dst, "bindings", "destination"))
    assert (s, dst_in) == (200, [expected])
    s, dst_out = mgmt.get(mgmt.path("exchanges", "/", dst, "bindings", "source"))
    assert s == 200 and [b["destination"] for b in dst_out] == [queue]
    assert publish(mgmt, src, "k.1", "through two exchanges") == (200, {"routed": True})
    assert get_message(ch, queue)[2] == b"through two exchanges"
    assert publish(mgmt, src, "j.1", "no") == (200, {"routed": False})
    one = post_path + "/" + q(expected["properties_key"])
    assert mgmt.get(one) == (200, expected)
    assert mgmt.delete(one) == (204, None)
    assert mgmt.get(post_path) == (200, [])


# --------------------------------------------------------------------------
# vhosts

def test_vhost_put_get_delete(mgmt, mgmt_cleanup, broker):
    name = uniq("mv")
    path = mgmt.path("vhosts", name)
    mgmt_cleanup(path)
    assert mgmt.put(path) == (201, None)
    assert mgmt.put(path) == (204, None)
    s, v = mgmt.get(path)
    assert s == 200
    assert (v["name"], v["tracing"], v["description"], v["tags"]) == (name, False, "", [])
    s, vs = mgmt.get("/api/vhosts")
    assert by_name(vs, name) is not None and by_name(vs, "/") is not None
    # the creating user gets full permissions and can use it at once
    assert mgmt.get(mgmt.path("permissions", name, broker.user)) == (200, {
        "user": broker.user, "vhost": name, "configure": ".*", "write": ".*", "read": ".*"})
    c = broker.connect(virtual_host=name)
    c.channel().queue_declare(uniq("q"), exclusive=True)
    c.close()
    s, xs = mgmt.get(mgmt.path("exchanges", name))
    assert s == 200 and {x["name"] for x in xs} == set(DEFAULT_EXCHANGES)
    assert mgmt.delete(path) == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(path) == (404, NOT_FOUND)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        broker.connect(virtual_host=name).close()


def test_vhost_description_tags_and_tracing(mgmt, mgmt_cleanup):
    name = put_vhost(mgmt, mgmt_cleanup,
                     body={"description": "for tests", "tags": "a,b", "tracing": True})
    s, v = mgmt.get(mgmt.path("vhosts", name))
    assert (v["description"], v["tags"], v["tracing"]) == ("for tests", ["a", "b"], True)
    assert mgmt.put(mgmt.path("vhosts", name), {"tracing": False}) == (204, None)
    s, v = mgmt.get(mgmt.path("vhosts", name))
    assert v["tracing"] is False


# --------------------------------------------------------------------------
# users and permissions

def test_user_put_get_delete(mgmt, mgmt_cleanup):
    name, password = put_user(mgmt, mgmt_cleanup, "management")
    path = mgmt.path("users", name)
    s, u = mgmt.get(path)
    assert s == 200
    assert u["name"] == name and u["tags"] == ["management"]
    assert isinstance(u["password_hash"], str) and u["password_hash"]
    assert "password" not in u
    assert u["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    s, us = mgmt.get("/api/users")
    assert s == 200 and by_name(us, name)["tags"] == ["management"]
    # the new user can log in to the API
    assert mgmt.get("/api/whoami", user=name, password=password) == \
        (200, {"name": name, "tags": ["management"]})
    # PUT again updates (password and tags); 204
    assert mgmt.put(path, {"password": "changed", "tags": "monitoring"}) == (204, None)
    assert mgmt.get("/api/whoami", user=name, password="changed") == \
        (200, {"name": name, "tags": ["monitoring"]})
    assert mgmt.get("/api/whoami", user=name, password=password)[0] == 401
    assert mgmt.delete(path) == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(path) == (404, NOT_FOUND)
    assert mgmt.get("/api/whoami", user=name, password="changed")[0] == 401


def test_user_tags_list_and_string(mgmt, mgmt_cleanup):
    a, _ = put_user(mgmt, mgmt_cleanup, ["monitoring", "management"])
    b, _ = put_user(mgmt, mgmt_cleanup, "monitoring,management")
    c, _ = put_user(mgmt, mgmt_cleanup, "")
    assert mgmt.get(mgmt.path("users", a))[1]["tags"] == ["monitoring", "management"]
    assert mgmt.get(mgmt.path("users", b))[1]["tags"] == ["monitoring", "management"]
    assert mgmt.get(mgmt.path("users", c))[1]["tags"] == []


def test_permissions(mgmt, mgmt_cleanup, broker):
    vhost = put_vhost(mgmt, mgmt_cleanup)
    user, password = put_user(mgmt, mgmt_cleanup, "")
    path = mgmt.path("permissions", vhost, user)
    assert mgmt.get(path) == (404, NOT_FOUND)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        broker.connect(user=user, password=password, virtual_host=vhost).close()
    perm = {"configure": "^cfg-", "write": ".*", "read": "^r"}
    assert mgmt.put(path, perm) == (201, None)
    assert mgmt.put(path, perm) == (204, None)
    expect = dict(perm, user=user, vhost=vhost)
    assert mgmt.get(path) == (200, expect)
    s, all_perms = mgmt.get("/api/permissions")
    assert s == 200 and expect in all_perms
    s, of_user = mgmt.get(mgmt.path("users", user, "permissions"))
    assert (s, of_user) == (200, [expect])
    s, of_vhost = mgmt.get(mgmt.path("vhosts", vhost, "permissions"))
    assert s == 200 and expect in of_vhost
    # the permission is in force on AMQP
    c = broker.connect(user=user, password=password, virtual_host=vhost)
    ch = c.channel()
    ch.queue_declare("cfg-" + uniq("q"), exclusive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(uniq("other"), exclusive=True)
    assert e.value.reply_code == 403
    c.close()
    assert mgmt.delete(path) == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(path) == (404, NOT_FOUND)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        broker.connect(user=user, password=password, virtual_host=vhost).close()
    s, b = mgmt.put(mgmt.path("permissions", vhost, uniq("no-such-user")), perm)
    assert (s, b) == (400, {"error": "bad_request", "reason": "vhost_or_user_not_found"})


# --------------------------------------------------------------------------
# policies

def test_policy_put_get_apply_delete(mgmt, mgmt_cleanup, ch):
    prefix = uniq("pol") + "-"
    pname = uniq("policy")
    path = mgmt.path("policies", "/", pname)
    mgmt_cleanup(path)
    body = {"pattern": "^" + prefix, "definition": {"max-length": 2}, "priority": 3,
            "apply-to": "queues"}
    assert mgmt.put(path, body) == (201, None)
    assert mgmt.put(path, body) == (204, None)
    expect = dict(body, vhost="/", name=pname)
    assert mgmt.get(path) == (200, expect)
    for listing in ("/api/policies", mgmt.path("policies", "/")):
        s, ps = mgmt.get(listing)
        assert s == 200 and expect in ps
    queue, qpath = put_queue(mgmt, mgmt_cleanup, name=prefix + "q")
    s, qi = poll(mgmt, qpath, lambda b: b.get("policy") == pname)
    assert qi["policy"] == pname
    assert qi["effective_policy_definition"] == {"max-length": 2}
    for i in range(5):
        ch.basic_publish("", queue, b"m%d" % i)
    assert wait_for(lambda: passive_count(ch, queue) == 2), passive_count(ch, queue)
    assert [b for b in (get_message(ch, queue)[2], get_message(ch, queue)[2])] == [b"m3", b"m4"]
    assert mgmt.delete(path) == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(path) == (404, NOT_FOUND)


def test_policy_defaults_and_errors(mgmt, mgmt_cleanup):
    pname = uniq("policy")
    path = mgmt.path("policies", "/", pname)
    mgmt_cleanup(path)
    assert mgmt.put(path, {"pattern": "^" + uniq("nothing"), "definition": {"max-length": 1}}) \
        == (201, None)
    s, p = mgmt.get(path)
    assert (p["apply-to"], p["priority"]) == ("all", 0)
    s, b = mgmt.put(mgmt.path("policies", "/", uniq("policy")),
                    {"pattern": "^x", "definition": {"no-such-setting": 5}})
    assert s == 400 and b["error"] == "bad_request" and "not recognised" in b["reason"]
    s, b = mgmt.put(mgmt.path("policies", "/", uniq("policy")), {"definition": {"max-length": 1}})
    assert s == 400 and b["error"] == "bad_request"  # pattern is mandatory


# --------------------------------------------------------------------------
# definitions

def test_definitions_export(mgmt, mgmt_cleanup, broker):
    queue, _ = put_queue(mgmt, mgmt_cleanup, body={"durable": True,
                                                  "arguments": {"x-max-length": 7}})
    x, _ = put_exchange(mgmt, mgmt_cleanup, body={"type": "fanout", "durable": True})
    assert mgmt.request("POST", mgmt.path("bindings", "/", "e", x, "q", queue),
                        {"routing_key": "rk"}).status == 201
    pname = uniq("policy")
    ppath = mgmt.path("policies", "/", pname)
    mgmt_cleanup(ppath)
    assert mgmt.put(ppath, {"pattern": "^" + uniq("nothing"), "definition": {"max-length": 1},
                            "apply-to": "queues", "priority": 1})[0] == 201
    s, d = mgmt.get("/api/definitions")
    assert s == 200
    for k in ("rabbit_version", "users", "vhosts", "permissions", "queues", "exchanges",
              "bindings", "policies", "parameters", "global_parameters"):
        assert k in d, k
    assert isinstance(d["rabbit_version"], str) and d["rabbit_version"]
    guest = by_name(d["users"], broker.user)
    assert guest["tags"] == ["administrator"] and guest["password_hash"]
    assert by_name(d["vhosts"], "/") is not None
    assert {"user": broker.user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} \
        in d["permissions"]
    assert {"name": queue, "vhost": "/", "durable": True, "auto_delete": False,
            "arguments": {"x-max-length": 7}} in d["queues"]
    assert {"name": x, "vhost": "/", "type": "fanout", "durable": True, "auto_delete": False,
            "internal": False, "arguments": {}} in d["exchanges"]
    assert {"source": x, "vhost": "/", "destination": queue, "destination_type": "queue",
            "routing_key": "rk", "arguments": {}} in d["bindings"]
    p = by_name(d["policies"], pname)
    assert p == {"vhost": "/", "name": pname, "pattern": p["pattern"], "apply-to": "queues",
                 "definition": {"max-length": 1}, "priority": 1}
    # the predeclared amq.* exchanges are not exported
    assert not [e for e in d["exchanges"] if e["name"].startswith("amq.") or e["name"] == ""]
    # per-vhost export: no users/vhosts/permissions, no vhost field
    s, dv = mgmt.get(mgmt.path("definitions", "/"))
    assert s == 200
    assert "users" not in dv and "vhosts" not in dv
    assert {"name": queue, "durable": True, "auto_delete": False,
            "arguments": {"x-max-length": 7}} in dv["queues"]


def test_definitions_import(mgmt, mgmt_cleanup, ch):
    queue, x = uniq("defs-q"), uniq("defs-x")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    mgmt_cleanup(mgmt.path("exchanges", "/", x))
    doc = {
        "queues": [{"name": queue, "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {"x-max-length": 3}}],
        "exchanges": [{"name": x, "vhost": "/", "type": "direct", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": x, "vhost": "/", "destination": queue,
                      "destination_type": "queue", "routing_key": "rk", "arguments": {}}],
    }
    assert mgmt.post("/api/definitions", doc) == (204, None)
    s, qi = mgmt.get(mgmt.path("queues", "/", queue))
    assert s == 200 and qi["durable"] is True and qi["arguments"] == {"x-max-length": 3}
    s, xi = mgmt.get(mgmt.path("exchanges", "/", x))
    assert s == 200 and xi["type"] == "direct"
    s, bs = mgmt.get(mgmt.path("bindings", "/", "e", x, "q", queue))
    assert s == 200 and [b["routing_key"] for b in bs] == ["rk"]
    assert publish(mgmt, x, "rk", "imported") == (200, {"routed": True})
    assert get_message(ch, queue)[2] == b"imported"
    # importing the same document again is a no-op
    assert mgmt.post("/api/definitions", doc) == (204, None)
    assert len(mgmt.get(mgmt.path("bindings", "/", "e", x, "q", queue))[1]) == 1
    s, b = mgmt.request("POST", "/api/definitions", raw=b"{not json")[:2]
    assert s == 400 and b["error"] == "bad_request"


@pytest.mark.warren
def test_large_definitions_are_imported_and_oversized_bodies_refused(mgmt, mgmt_cleanup):
    # A definitions file of several MiB (RabbitMQ reads up to 20 MiB since CVE-2023-46118's
    # fix) goes in; a body past the limit is refused with 413 before anything is imported.
    queue = uniq("big-defs-q")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    doc = {"queues": [{"name": queue, "vhost": "/", "durable": True, "auto_delete": False,
                       "arguments": {}}],
           "padding": "x" * (5 * 1024 * 1024)}
    assert mgmt.post("/api/definitions", doc, timeout=60) == (204, None)
    assert mgmt.get(mgmt.path("queues", "/", queue))[0] == 200
    other = uniq("too-big-q")
    doc = {"queues": [{"name": other, "vhost": "/", "durable": True, "auto_delete": False,
                       "arguments": {}}],
           "padding": "x" * (20 * 1024 * 1024)}
    s, b = mgmt.post("/api/definitions", doc, timeout=60)
    assert s == 413 and b["error"] == "payload_too_large", (s, b)
    assert mgmt.get(mgmt.path("queues", "/", other))[0] == 404


def test_definitions_import_per_vhost(mgmt, mgmt_cleanup):
    vhost = put_vhost(mgmt, mgmt_cleanup)
    queue = uniq("defs-q")
    doc = {"queues": [{"name": queue, "durable": True, "auto_delete": False, "arguments": {}}]}
    assert mgmt.post(mgmt.path("definitions", vhost), doc) == (204, None)
    s, qi = mgmt.get(mgmt.path("queues", vhost, queue))
    assert s == 200 and qi["vhost"] == vhost


# --------------------------------------------------------------------------
# security headers

@pytest.mark.warren
@pytest.mark.parametrize("path", ["/", "/app.js", "/api/overview", "/api/no-such-thing"])
def test_every_answer_carries_the_security_headers(mgmt, path):
    r = mgmt.request("GET", path)
    csp = r.headers["Content-Security-Policy"]
    # Nothing inline may run, nothing from elsewhere may load, no page may frame the UI.
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, csp
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-store"
    # An unauthenticated answer too.
    assert mgmt.request("GET", "/api/overview", auth=False).headers["X-Frame-Options"] == "DENY"


# --------------------------------------------------------------------------
# health checks

@pytest.mark.parametrize("check", ["alarms", "local-alarms"])
def test_health_checks(mgmt, check):
    assert mgmt.get("/api/health/checks/" + check) == (200, {"status": "ok"})
    assert mgmt.get("/api/health/checks/" + check, auth=False)[0] == 401


@pytest.mark.rabbit4
def test_health_check_ready_to_serve_clients(mgmt):
    # not in RabbitMQ 3.10 (404 there); RabbitMQ 4.x answers 200 {"status":"ok"}
    assert mgmt.get("/api/health/checks/ready-to-serve-clients") == (200, {"status": "ok"})


# --------------------------------------------------------------------------
# errors

def test_wrong_password_401(mgmt, broker):
    r = mgmt.request("GET", "/api/overview", password="wrong-" + uniq())
    assert r.status == 401
    assert r.body == {"error": "not_authorized", "reason": "Login failed"}
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic ")
    r = mgmt.request("GET", "/api/overview", user=uniq("nobody"), password="x")
    assert (r.status, r.body) == (401, {"error": "not_authorized", "reason": "Login failed"})
    r = mgmt.request("GET", "/api/overview", auth=False)
    assert r.status == 401
    assert r.headers.get("WWW-Authenticate", "").startswith("Basic ")


@pytest.mark.parametrize("tags", ["management", "monitoring", "policymaker"])
def test_non_admin_cannot_manage_users(mgmt, mgmt_cleanup, tags):
    user, password = put_user(mgmt, mgmt_cleanup, tags)
    target = uniq("mu")
    mgmt_cleanup(mgmt.path("users", target))
    not_admin = {"error": "not_authorised", "reason": "Not administrator user"}
    assert mgmt.put(mgmt.path("users", target), {"password": "x", "tags": ""},
                    user=user, password=password) == (401, not_admin)
    assert mgmt.get("/api/users", user=user, password=password) == (401, not_admin)
    assert mgmt.get(mgmt.path("users", target))[0] == 404  # nothing was created
    # but they may use the API
    assert mgmt.get("/api/whoami", user=user, password=password) == \
        (200, {"name": user, "tags": [tags]})
    assert mgmt.get("/api/overview", user=user, password=password)[0] == 200


def test_user_without_tags_is_not_a_management_user(mgmt, mgmt_cleanup):
    user, password = put_user(mgmt, mgmt_cleanup, "")
    not_mgmt = {"error": "not_authorised", "reason": "Not management user"}
    for path in ("/api/whoami", "/api/overview", "/api/queues"):
        assert mgmt.get(path, user=user, password=password) == (401, not_mgmt), path
    assert mgmt.put(mgmt.path("users", uniq("mu")), {"password": "x", "tags": ""},
                    user=user, password=password) == (401, not_mgmt)


@pytest.mark.parametrize("route", ["queues", "exchanges", "users", "vhosts", "policies"])
def test_malformed_json_400(mgmt, route):
    name = uniq("bad")
    path = {"queues": mgmt.path("queues", "/", name),
            "exchanges": mgmt.path("exchanges", "/", name),
            "users": mgmt.path("users", name),
            "vhosts": mgmt.path("vhosts", name),
            "policies": mgmt.path("policies", "/", name)}[route]
    r = mgmt.request("PUT", path, raw=b'{"durable": tru')
    assert (r.status, r.body) == (400, {"error": "bad_request", "reason": "not_json"})
    assert mgmt.get(path) == (404, NOT_FOUND)  # nothing was created


@pytest.mark.parametrize("path", [
    "/api/queues/%2F/{u}", "/api/exchanges/%2F/{u}", "/api/vhosts/{u}", "/api/users/{u}",
    "/api/policies/%2F/{u}", "/api/queues/{u}", "/api/queues/{u}/{u}", "/api/exchanges/{u}",
    "/api/permissions/%2F/{u}", "/api/{u}"])
def test_unknown_object_404(mgmt, path):
    assert mgmt.get(path.format(u=uniq("nope"))) == (404, NOT_FOUND)


# --------------------------------------------------------------------------
# message rates

def test_message_stats(mgmt, mgmt_cleanup, ch):
    queue, qpath = put_queue(mgmt, mgmt_cleanup)
    for i in range(3):
        ch.basic_publish("", queue, b"r%d" % i)
    get_message(ch, queue, auto_ack=True)
    get_message(ch, queue, auto_ack=False)

    def has_stats(b):
        ms = b.get("message_stats")
        return isinstance(ms, dict) and ms.get("publish") == 3 and ms.get("deliver_get") == 2

    s, qi = poll(mgmt, qpath, has_stats)
    ms = qi["message_stats"]
    assert (ms["publish"], ms["deliver_get"], ms["get"], ms["get_no_ack"]) == (3, 2, 1, 1)
    for k in ("publish", "deliver_get", "get", "get_no_ack"):
        assert isinstance(ms[k + "_details"]["rate"], (int, float)), k
    s, o = poll(mgmt, "/api/overview",
                lambda o: isinstance(o["message_stats"], dict)
                and o["message_stats"].get("publish", 0) >= 3)
    oms = o["message_stats"]
    assert oms["publish"] >= 3 and oms["deliver_get"] >= 2
    assert isinstance(oms["publish_details"]["rate"], (int, float))
    assert "rate" in oms["deliver_get_details"]
    s, x = poll(mgmt, mgmt.path("exchanges", "/", "amq.default"),
                lambda b: isinstance(b.get("message_stats"), dict)
                and b["message_stats"].get("publish_in", 0) >= 3)
    assert x["message_stats"]["publish_in"] >= 3
    assert "rate" in x["message_stats"]["publish_in_details"]


# --------------------------------------------------------------------------
# firehose tracing

def test_tracing(mgmt, mgmt_cleanup, broker):
    vhost = put_vhost(mgmt, mgmt_cleanup, body={"tracing": True})
    assert mgmt.get(mgmt.path("vhosts", vhost))[1]["tracing"] is True
    node = mgmt.get("/api/overview")[1]["node"]
    # A trace message's "node" is the node of the publishing (or delivering) channel: in a
    # cluster (WARREN_CLUSTER) the connection goes to node 1, the one `mgmt` asks.
    conn = broker.connect(virtual_host=vhost, node=0)
    try:
        ch = conn.channel()
        trace_q = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(trace_q, "amq.rabbitmq.trace", "#")
        work = uniq("work")
        ch.queue_declare(work, exclusive=True)
        x = uniq("tx")
        ch.exchange_declare(x, "direct", auto_delete=True)
        ch.queue_bind(work, x, "rk")
        props = pika.BasicProperties(content_type="text/plain", correlation_id="cid",
                                     headers={"a": 1})
        ch.basic_publish("", work, b"via default", props)
        ch.basic_publish(x, "rk", b"via named", pika.BasicProperties(headers={"CC": [work]}))
        m, _, body = get_message(ch, work, auto_ack=False)
        assert body == b"via default"
        ch.basic_nack(m.delivery_tag, requeue=True)
        m, _, body = get_message(ch, work, auto_ack=True)
        assert body == b"via default" and m.redelivered

        traces = []

        def collect():
            while True:
                tm, tp, tb = ch.basic_get(trace_q, auto_ack=True)
                if tm is None:
                    return len(traces) >= 4
                traces.append((tm, tp, tb))

        assert wait_for(collect, timeout=10, interval=0.05), \
            [(t[0].routing_key, t[2]) for t in traces]
        assert [(t[0].exchange, t[0].routing_key, t[2]) for t in traces] == [
            ("amq.rabbitmq.trace", "publish.", b"via default"),   # default exchange: "publish."
            ("amq.rabbitmq.trace", "publish." + x, b"via named"),
            ("amq.rabbitmq.trace", "deliver." + work, b"via default"),
            ("amq.rabbitmq.trace", "deliver." + work, b"via default"),
        ]
        pub, pub2, dlv, dlv2 = [t[1].headers for t in traces]
        props_table = {"content_type": "text/plain", "correlation_id": "cid", "headers": {"a": 1}}
        assert pub["exchange_name"] == ""
        assert pub["routing_keys"] == [work]
        assert pub["properties"] == props_table
        assert pub["node"] == node
        assert pub["vhost"] == vhost and pub["user"] == broker.user
        assert pub["routed_queues"] == [work]
        assert isinstance(pub["channel"], int) and " -> " in pub["connection"]
        assert "redelivered" not in pub
        assert pub2["exchange_name"] == x
        assert pub2["routing_keys"] == ["rk", work]   # CC keys are listed too
        assert pub2["routed_queues"] == [work]
        for d, redelivered in ((dlv, 0), (dlv2, 1)):
            assert d["exchange_name"] == "" and d["routing_keys"] == [work]
            assert d["properties"] == props_table
            assert d["node"] == node and d["vhost"] == vhost and d["user"] == broker.user
            # an integer (AMQP signed int), not a boolean
            assert type(d["redelivered"]) is int and d["redelivered"] == redelivered
            assert "routed_queues" not in d
        # tracing off: no more copies
        assert mgmt.put(mgmt.path("vhosts", vhost), {"tracing": False}) == (204, None)
        ch.basic_publish("", work, b"untraced")
        get_message(ch, work)
        time.sleep(0.3)  # absence check: give a (wrong) trace copy time to arrive
        assert ch.basic_get(trace_q, auto_ack=True) == (None, None, None)
    finally:
        if conn.is_open:
            conn.close()


# --------------------------------------------------------------------------
# named traces into files (rabbitmq_tracing)

@pytest.mark.parametrize("fmt", ["text", "json"])
def test_trace_into_a_file(mgmt, mgmt_cleanup, connect, fmt):
    name = uniq("trace")
    path = mgmt.path("traces", "/", name)
    fname = name + ".log"
    mgmt_cleanup(mgmt.path("trace-files", fname))
    mgmt_cleanup(path)
    s, b = mgmt.put(path, {"format": fmt, "pattern": "#"})
    assert s in (201, 204), (s, b)
    s, t = mgmt.get(path)
    assert s == 200 and (t["name"], t["vhost"], t["format"], t["pattern"]) == (name, "/", fmt, "#")
    assert name in [x["name"] for x in mgmt.get("/api/traces")[1]]
    conn = connect()
    ch = conn.channel()
    queue = ch.queue_declare(uniq("traced"), exclusive=True).method.queue
    payload = uniq("traced-payload")
    ch.basic_publish("", queue, payload.encode(), pika.BasicProperties(content_type="text/plain"))
    assert get_message(ch, queue, auto_ack=True)[2] == payload.encode()

    def contents():
        s, files = mgmt.get("/api/trace-files")
        if s != 200 or fname not in [f["name"] for f in files]:
            return None
        r = mgmt.request("GET", mgmt.path("trace-files", fname))
        if r.status != 200 or r.body is None:
            return None
        # a one-entry json file decodes as an object; text stays text
        text = r.body if isinstance(r.body, str) else json.dumps(r.body)
        return text if text.count(queue) >= 2 else None

    text = wait_for(contents, timeout=STATS)
    assert text, "the published and received copies reach %s" % fname
    if fmt == "text":
        assert "Message published" in text and "Message received" in text
        assert payload in text
    else:
        entries = [json.loads(l) for l in text.splitlines() if l.strip()]
        mine = [e for e in entries if queue in e.get("routing_keys", []) or e.get("queue") == queue]
        assert {e["type"] for e in mine} == {"published", "received"}
        assert base64.b64decode(mine[0]["payload"]) == payload.encode()
    assert mgmt.delete(path) == (204, None)
    assert mgmt.get(path) == (404, NOT_FOUND)
    assert mgmt.delete(mgmt.path("trace-files", fname)) == (204, None)
    assert fname not in [f["name"] for f in mgmt.get("/api/trace-files")[1]]
