"""The containerized cluster as a user runs it: ``scripts/cluster up`` from nothing (images
built, base image made when no registry has one), three nodes behind HAProxy, the seed's
hello world and a confirmed quorum queue through HAProxy, the queue leader's container
killed while a client reconnects through HAProxy and gets every confirmed message, HAProxy
taking a paused node and a node cut off from the others out of rotation (its stats CSV), and
``scripts/cluster down`` leaving no container, network or volume behind.

Needs Docker and ``WARREN_BIN`` (the binary put in the image; ``scripts/test`` passes the
debug build). The cluster gets its own compose project, env file, subnet and free host
ports, so it does not touch a cluster a developer runs with ``scripts/cluster up``.
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pika
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "cluster-tests"))
from chaos.cluster import Cluster  # noqa: E402

PROJECT = "warrentest"
SUBNET = "172.29.84"
NODES = ["warren@warren-1", "warren@warren-2", "warren@warren-3"]


class ComposeCluster(Cluster):
    """The chaos suite's cluster control (``cluster-tests/chaos/cluster.py``) under this
    test's project, subnet and ports, with what these tests ask of HAProxy besides."""

    def __init__(self, tmp):
        super().__init__(tmp, project=PROJECT, subnet=SUBNET)

    def script(self, *args, timeout=120):
        return super().script(*args, timeout=timeout, check=False)

    def params(self):
        user, password = self.credentials()
        return pika.ConnectionParameters(
            "127.0.0.1", self.amqp, "/", pika.PlainCredentials(user, password),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10,
        )

    def connect(self, within=30.0):
        """A connection through HAProxy, retried until `within` seconds have passed."""
        deadline = time.monotonic() + within
        while True:
            try:
                return pika.BlockingConnection(self.params())
            except pika.exceptions.AMQPConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def haproxy_view(self):
        """{(backend, server): status} from HAProxy's stats CSV."""
        with urllib.request.urlopen("http://127.0.0.1:%d/;csv" % self.stats, timeout=5) as r:
            rows = r.read().decode().splitlines()
        header = rows[0].lstrip("# ").split(",")
        px, sv, st = header.index("pxname"), header.index("svname"), header.index("status")
        view = {}
        for row in rows[1:]:
            cols = row.split(",")
            if len(cols) > st and cols[sv] not in ("FRONTEND", "BACKEND"):
                view[(cols[px], cols[sv])] = cols[st]
        return view

    def until_status(self, server, wanted, within):
        """Waits until HAProxy's AMQP backend shows `server` with a status starting with
        `wanted` ("UP" or "DOWN"); the seconds it took."""
        began = time.monotonic()
        seen = None
        while time.monotonic() - began < within:
            seen = self.haproxy_view().get(("warren_amqp", server))
            if seen is not None and seen.split(" ")[0] == wanted:
                return time.monotonic() - began
            time.sleep(0.2)
        pytest.fail("HAProxy never showed %s %s within %ss (last: %s)" % (server, wanted, within, seen))

    def until_steady_up(self, server, hold, within):
        """Waits until HAProxy shows `server` plainly UP (no failed check pending) for `hold`
        seconds in a row."""
        began = time.monotonic()
        since = None
        seen = None
        while time.monotonic() - began < within:
            seen = self.haproxy_view().get(("warren_amqp", server))
            if seen == "UP":
                since = since or time.monotonic()
                if time.monotonic() - since >= hold:
                    return
            else:
                since = None
            time.sleep(0.2)
        pytest.fail("HAProxy never kept %s UP for %ss within %ss (last: %s)" % (server, hold, within, seen))

    def leftovers(self):
        label = "label=com.docker.compose.project=%s" % PROJECT
        found = {}
        for kind, cmd in [
            ("containers", ["docker", "ps", "-aq", "--filter", label]),
            ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
            ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
        ]:
            found[kind] = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout.split()
        return found


@pytest.fixture(scope="module")
def cluster():
    if not os.environ.get("WARREN_BIN"):
        pytest.fail("WARREN_BIN must name the warren binary to put in the image")
    with tempfile.TemporaryDirectory() as tmp:
        c = ComposeCluster(tmp)
        # From nothing: the first run also builds the images (and the base image when no
        # registry has one), which takes minutes on a fresh machine.
        up = c.script("up", timeout=1200)
        try:
            assert up.returncode == 0, "scripts/cluster up failed:\n%s\n%s" % (up.stdout, up.stderr)
            assert "cluster ready in" in up.stdout, up.stdout
            yield c
        finally:
            c.script("down", timeout=120)


def wait_all_up(c, within=60):
    for n in (1, 2, 3):
        c.until_status("warren-%d" % n, "UP", within)


def test_all_three_nodes_are_listed_running_through_haproxy(cluster):
    nodes = cluster.api("/api/nodes")
    assert sorted(n["name"] for n in nodes) == NODES
    assert all(n["running"] for n in nodes), nodes
    view = cluster.haproxy_view()
    assert all(view[("warren_amqp", "warren-%d" % n)] == "UP" for n in (1, 2, 3)), view


def test_the_seeds_hello_world_through_haproxy(cluster):
    conn = cluster.connect()
    ch = conn.channel()
    ch.queue_declare(queue="hello")
    ch.basic_publish(exchange="", routing_key="hello", body=b"Hello World!")
    body = None
    deadline = time.monotonic() + 10
    while body is None and time.monotonic() < deadline:
        _, _, body = ch.basic_get(queue="hello", auto_ack=True)
    assert body == b"Hello World!"
    conn.close()


def test_a_killed_leader_loses_nothing_confirmed(cluster):
    conn = cluster.connect()
    ch = conn.channel()
    ch.confirm_delivery()
    # A plain durable declare: the compose cluster's default queue type is quorum.
    ch.queue_declare(queue="orders", durable=True)
    props = pika.BasicProperties(delivery_mode=2)
    for i in range(300):
        ch.basic_publish(exchange="", routing_key="orders", body=b"order-%d" % i, properties=props)
    conn.close()
    q = cluster.api("/api/queues/%2F/orders")
    assert q["type"] == "quorum", q
    assert sorted(q["members"]) == NODES, q
    leader = q["leader"]
    assert leader in NODES, q

    # The leader's container dies hard; a client reconnects through HAProxy (which sends it
    # to a live node) and gets every confirmed message.
    service = leader.split("@", 1)[1]
    killed = cluster.container(service)
    subprocess.run(["docker", "kill", "-s", "KILL", killed], check=True, timeout=30, capture_output=True)
    cluster.until_status(service, "DOWN", within=10)
    got = set()
    deadline = time.monotonic() + 90
    while len(got) < 300:
        assert time.monotonic() < deadline, "only %d of 300 confirmed messages came back" % len(got)
        try:
            conn = cluster.connect()
            ch = conn.channel()
            ch.basic_qos(prefetch_count=100)
            for method, _, body in ch.consume("orders", inactivity_timeout=5):
                if method is None:
                    break
                got.add(body)
                ch.basic_ack(method.delivery_tag)
                if len(got) == 300:
                    break
            conn.close()
        except (pika.exceptions.AMQPError, OSError):
            time.sleep(0.5)  # the queue's new leader is being elected, or the node went
    assert got == {b"order-%d" % i for i in range(300)}
    # Started again (a killed container stays down: Docker's restart policy leaves what was
    # killed by hand), it rejoins and HAProxy takes it back.
    subprocess.run(["docker", "start", killed], check=True, timeout=60, capture_output=True)
    wait_all_up(cluster, within=90)


def test_haproxy_takes_a_paused_node_out_and_back(cluster):
    wait_all_up(cluster)
    c2 = cluster.container("warren-2")
    subprocess.run(["docker", "pause", c2], check=True, timeout=30)
    try:
        took = cluster.until_status("warren-2", "DOWN", within=10)
        # Clients still get in, on the others.
        cluster.connect(within=10).close()
    finally:
        subprocess.run(["docker", "unpause", c2], check=True, timeout=30)
    cluster.until_status("warren-2", "UP", within=20)
    print("paused node marked down after %.1f s" % took)


def test_haproxy_takes_a_node_cut_off_from_the_others_out_and_back(cluster):
    wait_all_up(cluster)
    c3 = cluster.container("warren-3")
    # Node 3 cannot reach nodes 1 and 2 (nor they it); HAProxy still reaches all three.
    cut = "; ".join(
        "iptables -A INPUT -s {ip} -j DROP; iptables -A OUTPUT -d {ip} -j DROP".format(ip="%s.%d" % (SUBNET, n))
        for n in (11, 12)
    )
    sidecar = ["docker", "run", "--rm", "--network", "container:%s" % c3, "--cap-add", "NET_ADMIN",
               "warren-haproxy:latest"]
    subprocess.run(sidecar + ["sh", "-c", cut], check=True, timeout=60, capture_output=True)
    try:
        # Node 3 goes out of rotation; the two others, the majority, never do (an election of
        # a new metadata leader, when node 3 led, does not take them out, nor their clients'
        # connections with them).
        began = time.monotonic()
        took = None
        while time.monotonic() - began < 20 and (took is None or time.monotonic() - began < took + 5):
            view = cluster.haproxy_view()
            if took is None and view[("warren_amqp", "warren-3")].startswith("DOWN"):
                took = time.monotonic() - began
            for n in (1, 2):
                status = view[("warren_amqp", "warren-%d" % n)]
                assert not status.startswith("DOWN"), "node %d went out of rotation: %s" % (n, view)
            time.sleep(0.2)
        assert took is not None, "HAProxy never took the cut-off node out"
        for n in (1, 2):
            cluster.until_steady_up("warren-%d" % n, hold=2, within=20)
        conn = cluster.connect(within=10)
        conn.channel().queue_declare(queue="during-the-cut", durable=True)
        conn.close()
    finally:
        subprocess.run(sidecar + ["iptables", "-F"], check=True, timeout=60, capture_output=True)
    cluster.until_status("warren-3", "UP", within=30)
    print("cut-off node marked down after %.1f s" % took)


def test_down_leaves_no_container_network_or_volume(cluster):
    down = cluster.script("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert cluster.leftovers() == {"containers": [], "networks": [], "volumes": []}
