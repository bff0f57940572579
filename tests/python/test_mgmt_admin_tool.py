"""rabbitmqadmin (the Python CLI shipped with the management plugin) against
the management API: list, declare, publish, get, export.

``RABBITMQADMIN`` overrides the command (default ``/usr/bin/rabbitmqadmin``,
Debian's copy of RabbitMQ 3.10's script); host and port come from the
``mgmt`` fixture."""
import json
import os
import shlex
import shutil
import subprocess

import pytest

from conftest import uniq

pytestmark = pytest.mark.mgmt

ADMIN = os.environ.get("RABBITMQADMIN", "/usr/bin/rabbitmqadmin")


@pytest.fixture
def admin(mgmt):
    cmd = shlex.split(ADMIN)
    if shutil.which(cmd[0]) is None:
        pytest.skip("%s not found (set RABBITMQADMIN)" % ADMIN)
    base = cmd + ["-H", mgmt.host, "-P", str(mgmt.port), "-u", mgmt.user, "-p", mgmt.password]

    def run(*args, check=True):
        r = subprocess.run(base + list(args), capture_output=True, text=True, timeout=30)
        if check:
            assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r

    return run


def test_declare_list_publish_get_delete(admin, mgmt, mgmt_cleanup):
    queue = uniq("adm")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    r = admin("declare", "queue", "name=" + queue, "durable=false")
    assert r.stdout.strip() == "queue declared"
    s, qi = mgmt.get(mgmt.path("queues", "/", queue))
    assert s == 200 and qi["durable"] is False

    r = admin("-f", "raw_json", "list", "queues")
    listed = json.loads(r.stdout)
    assert queue in [x["name"] for x in listed]

    r = admin("publish", "exchange=amq.default", "routing_key=" + queue, "payload=hi there")
    assert r.stdout.strip() == "Message published"

    r = admin("-f", "raw_json", "get", "queue=" + queue, "ackmode=ack_requeue_false")
    [m] = json.loads(r.stdout)
    assert (m["payload"], m["payload_encoding"], m["payload_bytes"]) == ("hi there", "string", 8)
    assert (m["exchange"], m["routing_key"], m["redelivered"], m["message_count"]) == \
        ("", queue, False, 0)
    r = admin("-f", "raw_json", "get", "queue=" + queue)
    assert json.loads(r.stdout) == []

    r = admin("delete", "queue", "name=" + queue)
    assert r.stdout.strip() == "queue deleted"
    assert mgmt.get(mgmt.path("queues", "/", queue))[0] == 404
    r = admin("get", "queue=" + queue, check=False)
    assert r.returncode != 0 and "Not found" in (r.stdout + r.stderr)


def test_declare_exchange_and_binding(admin, mgmt, mgmt_cleanup):
    queue, x = uniq("adm"), uniq("admx")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    mgmt_cleanup(mgmt.path("exchanges", "/", x))
    admin("declare", "exchange", "name=" + x, "type=fanout")
    admin("declare", "queue", "name=" + queue)
    admin("declare", "binding", "source=" + x, "destination=" + queue, "routing_key=k")
    s, bs = mgmt.get(mgmt.path("bindings", "/", "e", x, "q", queue))
    assert s == 200 and [b["routing_key"] for b in bs] == ["k"]
    r = admin("-f", "raw_json", "list", "bindings", "source", "destination", "routing_key")
    assert {"source": x, "destination": queue, "routing_key": "k"} in json.loads(r.stdout)


def test_export_definitions(admin, mgmt, mgmt_cleanup, tmp_path, broker):
    queue = uniq("adm")
    mgmt_cleanup(mgmt.path("queues", "/", queue))
    admin("declare", "queue", "name=" + queue, "durable=true")
    out = tmp_path / "defs.json"
    r = admin("export", str(out))
    assert "Exported definitions" in r.stdout
    d = json.loads(out.read_text())
    for k in ("rabbit_version", "users", "vhosts", "permissions", "queues", "exchanges",
              "bindings", "policies"):
        assert k in d, k
    assert broker.user in [u["name"] for u in d["users"]]
    assert "/" in [v["name"] for v in d["vhosts"]]
    assert {"name": queue, "vhost": "/", "durable": True, "auto_delete": False,
            "arguments": {}} in d["queues"]


def test_list_overview_and_nodes(admin, mgmt):
    r = admin("-f", "raw_json", "show", "overview")
    [o] = json.loads(r.stdout)
    assert o["rabbitmq_version"] == mgmt.get("/api/overview")[1]["rabbitmq_version"]
    r = admin("-f", "raw_json", "list", "nodes")
    nodes = json.loads(r.stdout)
    assert mgmt.get("/api/overview")[1]["node"] in [n["name"] for n in nodes]
