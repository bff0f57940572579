"""`warren ctl` (rabbitmqctl's commands over the management HTTP API) against the
broker under test: what a user sees (stdout rows, stderr, exit code) and the
effect, checked through the API or pika.

Runs the binary in ``WARREN_BIN`` (skipped without it) with ``--http-addr``
taken from the ``mgmt`` fixture, so the same tests run against RabbitMQ
(``AMQP_URL`` + ``MGMT_URL``) and against Warren.  Exit codes are
rabbitmqctl's: 64 usage, 65 data / no such vhost, 67 no such user,
69 unavailable / not found, 70 exists, 77 login refused."""
import json
import os
import socket
import subprocess
import time

import pika
import pytest

from conftest import uniq, wait_for

pytestmark = pytest.mark.mgmt


@pytest.fixture(scope="session")
def ctl_base(broker, mgmt):
    binary = os.environ.get("WARREN_BIN")
    if not binary:
        pytest.skip("WARREN_BIN not set: these tests run `$WARREN_BIN ctl`")
    return [binary, "ctl", "--http-addr", "%s:%d" % (mgmt.host, mgmt.port),
            "--username", broker.user, "--password", broker.password]


@pytest.fixture
def ctl(ctl_base):
    """ctl(*args, input=None, ok=True) -> CompletedProcess (text); ok=True asserts exit 0."""

    def run(*args, input=None, ok=True):
        r = subprocess.run(ctl_base + list(args), capture_output=True, text=True, input=input,
                           timeout=30)
        if ok:
            assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r

    return run


def lines(r):
    return r.stdout.splitlines()


def table(r):
    """The tab-separated rows of a listing run with -s (no info line, no header)."""
    return [l.split("\t") for l in lines(r)]


def can_login(broker, user, password):
    try:
        broker.connect(user=user, password=password).close()
        return True
    except pika.exceptions.AMQPConnectionError:
        return False


def usage_error(r, code=64):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Usage" in r.stderr, r.stderr


@pytest.fixture
def user(mgmt, mgmt_cleanup):
    """A fresh user (name, password) with full permissions on "/", deleted at test end."""
    name, password = uniq("ctl-user"), "pw-" + uniq()
    mgmt_cleanup(mgmt.path("users", name))
    mgmt.ok("PUT", mgmt.path("users", name), {"password": password, "tags": ""})
    mgmt.ok("PUT", mgmt.path("permissions", "/", name),
            {"configure": ".*", "write": ".*", "read": ".*"})
    return name, password


# ---------------------------------------------------------------- users

def test_ctl_add_user_then_login_then_delete_user(ctl, broker, mgmt, mgmt_cleanup):
    name, password = uniq("ctl-user"), "secret-" + uniq()
    mgmt_cleanup(mgmt.path("users", name))
    r = ctl("add_user", name, password)
    assert lines(r)[0] == 'Adding user "%s" ...' % name
    ctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    assert can_login(broker, name, password)
    assert not can_login(broker, name, "wrong")
    r = ctl("add_user", name, "other", ok=False)
    assert r.returncode == 70 and 'User "%s" already exists' % name in r.stderr
    assert can_login(broker, name, password)  # the password was not changed
    r = ctl("delete_user", name)
    assert lines(r) == ['Deleting user "%s" ...' % name]
    assert mgmt.get(mgmt.path("users", name))[0] == 404
    assert not can_login(broker, name, password)
    r = ctl("delete_user", name, ok=False)
    assert r.returncode == 67 and "does not exist" in r.stderr


def test_ctl_quiet_add_user_prints_nothing(ctl, mgmt, mgmt_cleanup):
    name = uniq("ctl-user")
    mgmt_cleanup(mgmt.path("users", name))
    assert ctl("-q", "add_user", name, "pw").stdout == ""
    assert mgmt.get(mgmt.path("users", name))[0] == 200


def test_ctl_change_password_keeps_tags(ctl, broker, mgmt, user):
    name, old = user
    mgmt.ok("PUT", mgmt.path("users", name), {"password": old, "tags": "monitoring"})
    r = ctl("change_password", name, "new-secret")
    assert lines(r) == ['Changing password for user "%s" ...' % name]
    assert can_login(broker, name, "new-secret")
    assert not can_login(broker, name, old)
    assert mgmt.get(mgmt.path("users", name))[1]["tags"] == ["monitoring"]
    r = ctl("change_password", uniq("nobody"), "x", ok=False)
    assert r.returncode == 67 and "does not exist" in r.stderr


def test_ctl_set_user_tags_keeps_password(ctl, broker, mgmt, user):
    name, password = user
    r = ctl("set_user_tags", name, "management", "monitoring")
    assert lines(r) == ['Setting tags for user "%s" to [management, monitoring] ...' % name]
    assert sorted(mgmt.get(mgmt.path("users", name))[1]["tags"]) == ["management", "monitoring"]
    assert can_login(broker, name, password)
    ctl("set_user_tags", name)
    assert mgmt.get(mgmt.path("users", name))[1]["tags"] == []
    assert can_login(broker, name, password)


def test_ctl_list_users(ctl, broker, mgmt, user):
    name, _ = user
    mgmt.ok("PUT", mgmt.path("users", name), {"password": "x", "tags": ["management", "policymaker"]})
    r = ctl("list_users")
    assert lines(r)[:2] == ["Listing users ...", "user\ttags"]
    rows = {row[0]: row[1] for row in table(ctl("-s", "list_users"))}
    assert rows[name] == "[management, policymaker]"
    api_tags = mgmt.get(mgmt.path("users", broker.user))[1]["tags"]
    assert rows[broker.user] == "[%s]" % ", ".join(api_tags)


# ---------------------------------------------------------------- vhosts and permissions

def test_ctl_add_list_delete_vhost(ctl, mgmt, mgmt_cleanup):
    vhost = uniq("ctl-vhost")
    mgmt_cleanup(mgmt.path("vhosts", vhost))
    r = ctl("add_vhost", vhost)
    assert lines(r) == ['Adding vhost "%s" ...' % vhost]
    assert mgmt.get(mgmt.path("vhosts", vhost))[0] == 200
    r = ctl("list_vhosts")
    assert lines(r)[:2] == ["Listing vhosts ...", "name"]
    assert [vhost] in table(ctl("-s", "list_vhosts"))
    assert ["/", "false"] in table(ctl("-s", "list_vhosts", "name", "tracing"))
    r = ctl("delete_vhost", vhost)
    assert lines(r) == ['Deleting vhost "%s" ...' % vhost]
    assert mgmt.get(mgmt.path("vhosts", vhost))[0] == 404
    r = ctl("delete_vhost", vhost, ok=False)
    assert r.returncode == 65 and "Virtual host '%s' does not exist" % vhost in r.stderr


def test_ctl_add_vhost_twice_keeps_its_description(ctl, mgmt, mgmt_cleanup):
    vhost = uniq("ctl-vhost")
    mgmt_cleanup(mgmt.path("vhosts", vhost))
    mgmt.ok("PUT", mgmt.path("vhosts", vhost), {"description": "kept", "tags": "a"})
    ctl("add_vhost", vhost)
    assert mgmt.get(mgmt.path("vhosts", vhost))[1]["description"] == "kept"


def test_ctl_set_list_clear_permissions(ctl, mgmt, mgmt_cleanup, user):
    name, _ = user
    vhost = uniq("ctl vhost/")  # path segments are percent-encoded
    mgmt_cleanup(mgmt.path("vhosts", vhost))
    ctl("add_vhost", vhost)
    r = ctl("set_permissions", "-p", vhost, name, "^conf-.*", "^write-.*", "")
    assert lines(r) == ['Setting permissions for user "%s" in vhost "%s" ...' % (name, vhost)]
    s, p = mgmt.get(mgmt.path("permissions", vhost, name))
    assert s == 200 and (p["configure"], p["write"], p["read"]) == ("^conf-.*", "^write-.*", "")
    r = ctl("list_permissions", "-p", vhost)
    assert lines(r)[:2] == ['Listing permissions for vhost "%s" ...' % vhost,
                            "user\tconfigure\twrite\tread"]
    assert [name, "^conf-.*", "^write-.*", ""] in table(ctl("-s", "list_permissions", "-p", vhost))
    r = ctl("list_user_permissions", name)
    assert lines(r)[:2] == ['Listing permissions for user "%s" ...' % name, "vhost\tconfigure\twrite\tread"]
    assert sorted(table(ctl("-s", "list_user_permissions", name))) == sorted(
        [["/", ".*", ".*", ".*"], [vhost, "^conf-.*", "^write-.*", ""]])
    r = ctl("clear_permissions", "-p", vhost, name)
    assert lines(r) == ['Clearing permissions for user "%s" in vhost "%s" ...' % (name, vhost)]
    assert mgmt.get(mgmt.path("permissions", vhost, name))[0] == 404
    assert ctl("-s", "list_permissions", "-p", vhost).stdout.find(name) == -1


def test_ctl_permissions_errors(ctl):
    r = ctl("set_permissions", uniq("nobody"), ".*", ".*", ".*", ok=False)
    assert r.returncode == 67 and r.stderr.startswith("Error:") and "does not exist" in r.stderr
    r = ctl("list_permissions", "-p", uniq("novhost"), ok=False)
    assert r.returncode == 65 and "does not exist" in r.stderr
    r = ctl("list_user_permissions", uniq("nobody"), ok=False)
    assert r.returncode == 67


# ---------------------------------------------------------------- queues, exchanges, bindings

def test_ctl_list_queues_counts_messages(ctl, ch, mgmt, mgmt_cleanup):
    queue = uniq("ctl-q")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    ch.queue_declare(queue, durable=True, arguments={"x-max-length": 10})
    for i in range(3):
        ch.basic_publish("", queue, b"m%d" % i)
    # the management API's counts follow the queue within a stats interval (5 s on RabbitMQ)
    row = wait_for(lambda: [queue, "3"] in table(ctl("-s", "list_queues")), timeout=15)
    assert row, ctl("-s", "list_queues").stdout
    r = ctl("list_queues")
    assert "Listing queues for vhost / ..." in lines(r)
    assert lines(r)[lines(r).index("Listing queues for vhost / ...") + 1] == "name\tmessages"
    r = ctl("-q", "list_queues", "name", "messages", "consumers", "durable", "arguments")
    assert lines(r)[0] == "name\tmessages\tconsumers\tdurable\targuments"
    assert [queue, "3", "0", "true", '{"x-max-length":10}'] in [l.split("\t") for l in lines(r)[1:]]
    r = ctl("--formatter", "json", "list_queues", "-p", "/", "name", "messages")
    assert {"name": queue, "messages": 3} in json.loads(r.stdout)


def test_ctl_list_exchanges(ctl, ch, mgmt, mgmt_cleanup):
    x = uniq("ctl-x")
    mgmt_cleanup(mgmt.path("exchanges", "/", x))
    ch.exchange_declare(x, "fanout", durable=True)
    r = ctl("list_exchanges")
    assert lines(r)[:2] == ["Listing exchanges for vhost / ...", "name\ttype"]
    assert [x, "fanout"] in table(ctl("-s", "list_exchanges"))
    assert ["amq.topic", "topic", "true", "false"] in table(
        ctl("-s", "list_exchanges", "name", "type", "durable", "internal"))
    assert [x, "true", "false"] in table(ctl("-s", "list_exchanges", "name", "durable", "auto_delete"))
    r = ctl("--no-table-headers", "list_exchanges")
    assert lines(r)[0] == "Listing exchanges for vhost / ..." and "name\ttype" not in lines(r)
    assert [x, "fanout"] in [l.split("\t") for l in lines(r)[1:]]


def test_ctl_list_bindings(ctl, ch, mgmt, mgmt_cleanup):
    queue = uniq("ctl-q")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    ch.queue_declare(queue)
    ch.queue_bind(queue, "amq.topic", "ctl.#", arguments={"x-k": "v"})
    r = ctl("list_bindings")
    assert lines(r)[:2] == ["Listing bindings for vhost /...",
                            "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments"]
    rows = table(ctl("-s", "list_bindings"))
    assert ["amq.topic", "exchange", queue, "queue", "ctl.#", '{"x-k":"v"}'] in rows
    assert ["", "exchange", queue, "queue", queue, "{}"] in rows
    rows = table(ctl("-s", "list_bindings", "source_name", "destination_name", "routing_key"))
    assert ["amq.topic", queue, "ctl.#"] in rows


def queue_length(connect, queue):
    c = connect()
    return c.channel().queue_declare(queue, passive=True).method.message_count


def test_ctl_purge_queue(ctl, ch, connect, mgmt, mgmt_cleanup):
    queue = uniq("ctl q/%")  # path segments are percent-encoded
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    ch.queue_declare(queue)
    for i in range(5):
        ch.basic_publish("", queue, b"x")
    assert wait_for(lambda: queue_length(connect, queue) == 5)
    r = ctl("purge_queue", "-p", "/", queue)
    assert lines(r) == ["Purging queue '%s' in vhost '/' ..." % queue]
    assert queue_length(connect, queue) == 0
    assert ch.basic_get(queue, auto_ack=True)[0] is None
    r = ctl("purge_queue", uniq("noqueue"), ok=False)
    assert r.returncode == 69 and r.stderr.startswith("Error:")


def test_ctl_delete_queue_if_empty_if_unused(ctl, ch, connect, mgmt, mgmt_cleanup):
    queue = uniq("ctl-q")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    ch.queue_declare(queue)
    ch.basic_publish("", queue, b"x")
    assert wait_for(lambda: queue_length(connect, queue) == 1)
    r = ctl("delete_queue", queue, "--if-empty", ok=False)
    assert r.returncode != 0 and r.stderr.startswith("Error:")
    assert lines(r) == ["Deleting queue '%s' on vhost '/' if queue is empty ..." % queue]
    tag = ch.basic_consume(queue, lambda *a: None)
    r = ctl("delete_queue", queue, "--if-unused", ok=False)
    assert r.returncode != 0 and r.stderr.startswith("Error:")
    ch.basic_cancel(tag)
    assert mgmt.get(mgmt.path("queues", "/", queue))[0] == 200  # still there
    r = ctl("delete_queue", queue)
    assert lines(r)[0] == "Deleting queue '%s' on vhost '/' ..." % queue
    assert lines(r)[1].startswith("Queue was successfully deleted with ")
    assert mgmt.get(mgmt.path("queues", "/", queue))[0] == 404
    r = ctl("delete_queue", queue, ok=False)
    assert r.returncode == 69 and "Queue not found" in r.stderr


# ---------------------------------------------------------------- connections, channels, consumers

def test_ctl_list_connections_channels_consumers(ctl, connect, mgmt, mgmt_cleanup):
    cname = uniq("ctl-conn")
    queue = uniq("ctl-q")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    conn = connect(client_properties={"connection_name": cname})
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=7)
    tag = ch.basic_consume(queue, lambda *a: None, consumer_tag="ctl-tag-" + uniq())

    def my_connection():
        rows = table(ctl("-s", "list_connections", "user_provided_name", "name", "user", "state"))
        return [r for r in rows if r[0] == cname and r[3] == "running"]

    # RabbitMQ fills in a connection's state with its first stats, a few seconds in
    found = wait_for(my_connection, timeout=15)
    assert found and found[0][2] == mgmt.user, table(ctl("-s", "list_connections", "user_provided_name"))
    conn_name = found[0][1]
    r = ctl("list_connections")
    assert lines(r)[:2] == ["Listing connections ...", "user\tpeer_host\tpeer_port\tstate"]

    def my_channel():
        rows = table(ctl("-s", "list_channels", "connection", "number", "consumer_count", "prefetch_count"))
        return [r for r in rows if r[0] == conn_name]

    chans = wait_for(lambda: [r for r in my_channel() if r[2] == "1"], timeout=15)
    assert chans == [[conn_name, "1", "1", "7"]], my_channel()
    r = ctl("list_channels")
    assert lines(r)[:2] == ["Listing channels ...", "pid\tuser\tconsumer_count\tmessages_unacknowledged"]

    def my_consumer():
        return [r for r in table(ctl("-s", "list_consumers")) if r[0] == queue]

    cons = wait_for(my_consumer, timeout=15)
    assert cons and cons[0][2:] == [tag, "true", "7", "true", "{}"], cons
    assert cons[0][1].startswith(conn_name)
    r = ctl("list_consumers", "-p", "/")
    assert lines(r)[:2] == ["Listing consumers in vhost / ...", "queue_name\tchannel_pid\tconsumer_tag\t"
                            "ack_required\tprefetch_count\tactive\targuments"]


# ---------------------------------------------------------------- policies

def test_ctl_set_list_clear_policy(ctl, mgmt, mgmt_cleanup):
    name = uniq("ctl-pol")
    mgmt_cleanup(mgmt.path("policies", "/", name))
    r = ctl("set_policy", "-p", "/", name, "^ctl-pol-q-", '{"max-length":1}', "--priority", "3",
            "--apply-to", "queues")
    assert lines(r) == ['Setting policy "%s" for pattern "^ctl-pol-q-" to "{"max-length":1}" with '
                        'priority "3" for vhost "/" ...' % name]
    s, p = mgmt.get(mgmt.path("policies", "/", name))
    assert s == 200
    assert (p["pattern"], p["definition"], p["priority"], p["apply-to"]) == \
        ("^ctl-pol-q-", {"max-length": 1}, 3, "queues")
    r = ctl("list_policies")
    assert lines(r)[:2] == ['Listing policies for vhost "/" ...',
                            "vhost\tname\tpattern\tapply-to\tdefinition\tpriority"]
    assert ["/", name, "^ctl-pol-q-", "queues", '{"max-length":1}', "3"] in table(ctl("-s", "list_policies"))
    ctl("set_policy", name, "^other$", '{"max-length":2}')
    p = mgmt.get(mgmt.path("policies", "/", name))[1]
    assert (p["pattern"], p["priority"], p["apply-to"]) == ("^other$", 0, "all")
    r = ctl("clear_policy", name)
    assert lines(r) == ['Clearing policy "%s" on vhost "/" ...' % name]
    assert mgmt.get(mgmt.path("policies", "/", name))[0] == 404
    r = ctl("clear_policy", name, ok=False)
    assert r.returncode == 69 and r.stderr.startswith("Error:")


def test_ctl_set_policy_refused_by_the_broker(ctl, mgmt, mgmt_cleanup):
    name = uniq("ctl-pol")
    mgmt_cleanup(mgmt.path("policies", "/", name))
    r = ctl("set_policy", name, ".*", '{"no-such-key":1}', ok=False)
    assert r.returncode == 69 and r.stderr.startswith("Error:")
    assert "no-such-key" in r.stderr and "&lt;" not in r.stderr
    assert mgmt.get(mgmt.path("policies", "/", name))[0] == 404


# ---------------------------------------------------------------- tracing

def test_ctl_trace_on_off_keeps_vhost_metadata(ctl, mgmt, mgmt_cleanup):
    vhost = uniq("ctl-vhost")
    mgmt_cleanup(mgmt.path("vhosts", vhost))
    mgmt.ok("PUT", mgmt.path("vhosts", vhost), {"description": "traced one", "tags": ["t1", "t2"]})
    r = ctl("trace_on", "-p", vhost)
    assert lines(r) == ['Starting tracing for vhost "%s" ...' % vhost, "Trace enabled for vhost %s" % vhost]
    v = mgmt.get(mgmt.path("vhosts", vhost))[1]
    assert (v["tracing"], v["description"], sorted(v["tags"])) == (True, "traced one", ["t1", "t2"])
    assert [vhost, "true"] in table(ctl("-s", "list_vhosts", "name", "tracing"))
    r = ctl("-q", "trace_off", "-p", vhost)
    assert lines(r) == ["Trace disabled for vhost %s" % vhost]
    v = mgmt.get(mgmt.path("vhosts", vhost))[1]
    assert (v["tracing"], v["description"], sorted(v["tags"])) == (False, "traced one", ["t1", "t2"])


# ---------------------------------------------------------------- definitions

def test_ctl_export_definitions(ctl, ch, mgmt, mgmt_cleanup, tmp_path):
    queue = uniq("ctl-q")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    ch.queue_declare(queue, durable=True)
    path = tmp_path / "defs.json"
    r = ctl("export_definitions", str(path))
    assert lines(r) == ['Exporting definitions in JSON to a file at "%s" ...' % path]
    defs = json.loads(path.read_text())
    assert {"name": queue, "vhost": "/"}.items() <= next(
        q for q in defs["queues"] if q["name"] == queue).items()
    r = ctl("export_definitions", "-")
    assert queue in [q["name"] for q in json.loads(r.stdout)["queues"]]


def test_ctl_import_definitions(ctl, connect, mgmt, mgmt_cleanup, tmp_path):
    q1, q2 = uniq("ctl-q"), uniq("ctl-q")
    for q in (q1, q2):
        mgmt_cleanup(mgmt.path("queues", "/", q))

    def defs(q):
        return {"queues": [{"name": q, "vhost": "/", "durable": True, "auto_delete": False,
                            "arguments": {"x-max-length": 5}}]}

    path = tmp_path / "defs.json"
    path.write_text(json.dumps(defs(q1)))
    r = ctl("import_definitions", str(path))
    assert lines(r)[0] == 'Importing definitions in JSON from a file at "%s" ...' % path
    s, qi = mgmt.get(mgmt.path("queues", "/", q1))
    assert s == 200 and qi["durable"] is True and qi["arguments"] == {"x-max-length": 5}
    assert queue_length(connect, q1) == 0
    ctl("-q", "import_definitions", "-", input=json.dumps(defs(q2)))
    assert mgmt.get(mgmt.path("queues", "/", q2))[0] == 200
    path.write_text("{not json")
    r = ctl("import_definitions", str(path), ok=False)
    assert r.returncode == 65 and r.stderr.startswith("Error:")


# ---------------------------------------------------------------- status

def test_ctl_status(ctl, broker, mgmt):
    node = mgmt.get("/api/overview")[1]["node"]
    r = ctl("status")
    out = lines(r)
    assert out[0] == "Status of node %s ..." % node
    for section in ("Runtime", "Alarms", "Totals", "Listeners"):
        assert section in out
    assert "Node name: %s" % node in out
    assert any(l.startswith("Interface: ") and "port: %d, protocol: amqp," % broker.port in l
               for l in out), out
    assert ctl("-q", "status").stdout.splitlines()[0] == "Runtime"


def test_ctl_cluster_status(ctl, mgmt):
    cluster = mgmt.get("/api/cluster-name")[1]["name"]
    nodes = [n["name"] for n in mgmt.get("/api/nodes")[1]]
    out = lines(ctl("cluster_status"))
    assert out[0].startswith("Cluster status of node ")
    assert "Cluster name: %s" % cluster in out
    running = out[out.index("Running Nodes") + 2:]
    assert running[:len(nodes)] == nodes


# ---------------------------------------------------------------- usage and connectivity errors

def test_ctl_usage_errors(ctl):
    usage_error(ctl("no_such_command", ok=False))
    usage_error(ctl("add_user", "only-a-name", ok=False))
    r = ctl("list_queues", "name", "bogus_column", ok=False)
    usage_error(r)
    assert "Info key(s) bogus_column are not supported" in r.stderr and r.stdout == ""
    usage_error(ctl("set_policy", "p", ".*", "{not json", ok=False))
    usage_error(ctl("set_policy", "p", ".*", "[1, 2]", ok=False))
    usage_error(ctl("set_policy", "p", ".*", "{}", "--apply-to", "everything", ok=False))
    usage_error(ctl("set_policy", "p", ".*", "{}", "--priority", "high", ok=False))


def test_ctl_unreachable_node_and_wrong_password(ctl_base, broker):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    base = list(ctl_base)
    base[base.index("--http-addr") + 1] = "127.0.0.1:%d" % port
    r = subprocess.run(base + ["list_queues"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 69 and "unable to reach the management HTTP API" in r.stderr
    base = list(ctl_base)
    base[base.index("--password") + 1] = "not-the-password"
    r = subprocess.run(base + ["list_users"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 77 and r.stderr.startswith("Error:")


def test_ctl_ping_and_await_startup(ctl, broker):
    addr = "%s:%d" % (broker.host, broker.port)
    assert ctl("ping", "--amqp-addr", addr).stdout == "Ping succeeded\n"
    assert ctl("await_startup", "--amqp-addr", addr, "-t", "5").stdout == "Node is running\n"
