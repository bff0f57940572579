"""Black-box AMQP 0-9-1 test suite shared fixtures.

Target broker selection (session-wide):

* ``AMQP_URL`` set (e.g. ``amqp://guest:guest@127.0.0.1:5673/%2F``): use that
  broker (normally a reference RabbitMQ).  Users/vhosts/permissions needed by
  the access tests are created with ``rabbitmqctl`` (see ``RABBITMQCTL`` below).
* else ``WARREN_BIN`` set: start ``$WARREN_BIN server --amqp-addr 127.0.0.1:<p>
  --http-addr 127.0.0.1:<p2> --prometheus-addr 127.0.0.1:<p3> --data-dir <tmp>
  --log-file <tmp>/warren-file.log --config <tmp>/warren.toml``
  (stderr to ``<tmp>/warren.log``), wait until the AMQP port accepts TCP
  (20 s), and kill it (by PID) at session end.
* ``WARREN_BIN`` and ``WARREN_CLUSTER=3`` (any N >= 2; unset, 0 or 1: the single
  broker above): start an N-node Warren
  cluster instead (``_start_cluster``).  Node i (1..N) gets its own directory
  ``<tmp>/n<i>`` (``data/``, stderr in ``warren.log``, ``--log-file``
  ``warren-file.log``), free ports, ``--node-name warren@n<i>``,
  ``--cluster-addr``/``--advertise-addr`` and the same ``--peers`` list and
  ``WARREN_CLUSTER_SECRET`` on every node, plus the same ``--config``.  All are
  started at once; the suite waits (60 s at most, else ``pytest.exit`` with the
  nodes' log tails) until every node accepts TCP on its AMQP port, answers 200
  on ``/api/health/checks/ready-to-serve-clients`` and node 1's ``/api/nodes``
  lists all N running; all are killed (by PID) at session end.

  The ``Broker`` keeps node 1 in ``port``/``http_port``/``prometheus_port``
  (raw-socket, management, Prometheus and ``warren ctl`` tests talk to node 1)
  and lists every node in ``nodes`` (``Node`` objects: ``port``, ``http_port``,
  ``prometheus_port``, ``name``, ``dir``) and ``ports``.  ``params()``/``connect()``
  hand the nodes out in turn, so consecutive connections of one test land on
  different nodes.  The turn starts, for each test, at a node chosen from a
  hash of the test's id: a test connects to the same nodes in the same order
  however it is selected (``-k``) and single-connection tests are spread over
  the nodes; ``WARREN_CLUSTER_SEED=k`` shifts every test's first node by k
  (seeds 0, 1, 2 together start each test once on each node of three).
  ``params(node=i)`` (0-based) pins a connection to node i
  (``node=0`` = the ``port`` node; in single-node mode only ``node=0`` exists);
  an explicit ``port=`` is used as given.  A failing test's report gets a
  section naming the nodes it connected to and the tail of what each node
  logged during the test.  ``broker.log_files`` lists every node's ``--log-file``
  (single node: ``<tmp>/warren-file.log``).

Access-control setup (users, vhosts, permissions)
--------------------------------------------------
The access tests need the users/vhosts/permissions listed in ``ACCESS_SETUP``
below.  For Warren they are written into the TOML config file passed with
``--config`` *before* the broker starts.  The file is complete: it also lists
the default ``guest`` user and the ``/`` vhost (a broker may treat those as
already present).  Its shape::

    [[users]]
    name = "alice"
    password = "secret"
    tags = ["administrator"]

    [[vhosts]]
    name = "v1"

    [[permissions]]
    user = "alice"
    vhost = "/"
    configure = ".*"
    write = ".*"
    read = ".*"

For RabbitMQ (``AMQP_URL``) the same setup is applied with
``rabbitmqctl -n $RABBITMQ_NODENAME add_user/add_vhost/set_permissions``
(``RABBITMQCTL`` overrides the command, default ``rabbitmqctl``;
``RABBITMQ_NODENAME`` defaults to ``ref@localhost``).

Management HTTP API and Prometheus (tests marked ``mgmt``)
----------------------------------------------------------
* ``mgmt`` fixture: a ``mgmt.Mgmt`` client (basic auth with the broker's
  user).  Base URL: for a Warren started by this file
  ``http://127.0.0.1:<broker.http_port>``; else (``AMQP_URL``) env
  ``MGMT_URL``, default ``http://127.0.0.1:15673``.
* ``metrics_url`` fixture: for a Warren started by this file
  ``http://127.0.0.1:<broker.prometheus_port>/metrics`` if the broker object
  has that attribute; else env ``METRICS_URL``; else the test is skipped.
* ``mgmt`` tests named in ``mgmt_pending.txt`` (features Warren has not built yet) are
  skipped against Warren unless ``WARREN_MGMT=1``.
"""

import base64
import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib

import pika
import pytest

from mgmt import Mgmt

# --------------------------------------------------------------------------
# Users / vhosts / permissions used by test_access.py (and the guest defaults).
ACCESS_SETUP = {
    "users": [
        {"name": "guest", "password": "guest", "tags": ["administrator"]},
        # full access to "/" and "warren-test-v1"
        {"name": "warren-alice", "password": "alice-secret", "tags": ["administrator"]},
        # restricted: may only configure/write resources named "bob-*", may read all
        {"name": "warren-bob", "password": "bob-secret", "tags": []},
        # no permissions at all on any vhost
        {"name": "warren-carol", "password": "carol-secret", "tags": []},
    ],
    "vhosts": ["/", "warren-test-v1"],
    "permissions": [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "warren-alice", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "warren-alice", "vhost": "warren-test-v1", "configure": ".*", "write": ".*", "read": ".*"},
        {"user": "warren-bob", "vhost": "/", "configure": "^bob-.*", "write": "^bob-.*", "read": ".*"},
    ],
}


def _toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def access_setup_toml(setup=ACCESS_SETUP):
    out = ["# generated by tests/python/conftest.py"]
    for u in setup["users"]:
        out += ["", "[[users]]", "name = %s" % _toml_str(u["name"]),
                "password = %s" % _toml_str(u["password"]),
                "tags = [%s]" % ", ".join(_toml_str(t) for t in u["tags"])]
    for v in setup["vhosts"]:
        out += ["", "[[vhosts]]", "name = %s" % _toml_str(v)]
    for p in setup["permissions"]:
        out += ["", "[[permissions]]", "user = %s" % _toml_str(p["user"]),
                "vhost = %s" % _toml_str(p["vhost"]),
                "configure = %s" % _toml_str(p["configure"]),
                "write = %s" % _toml_str(p["write"]),
                "read = %s" % _toml_str(p["read"])]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
class Broker:
    """Address of the broker under test plus a few helpers."""

    def __init__(self, host, port, vhost="/", user="guest", password="guest",
                 kind="external", proc=None, tmpdir=None, nodes=None):
        self.host = host
        self.port = port
        self.vhost = vhost
        self.user = user
        self.password = password
        self.kind = kind  # "rabbitmq-url" or "warren"
        self.proc = proc
        self.tmpdir = tmpdir
        self.server_properties = {}
        # Cluster mode (WARREN_CLUSTER): every node; nodes[0] is the one in port/http_port/...
        self.nodes = list(nodes or [])
        self._turn = 0
        self._turn_lock = threading.Lock()
        self.used = []  # node numbers (1-based) params() handed out in the current test

    @property
    def clustered(self):
        return len(self.nodes) > 1

    @property
    def ports(self):
        """AMQP ports of all nodes (just ``port`` for a single broker)."""
        return [n.port for n in self.nodes] or [self.port]

    @property
    def log_files(self):
        """The ``--log-file`` of every node of a Warren started here (else empty)."""
        if self.nodes:
            return [n.file_log for n in self.nodes]
        if self.kind == "warren" and self.tmpdir:
            return [os.path.join(self.tmpdir, "warren-file.log")]
        return []

    def start_turn(self, key):
        """Cluster mode: the next params() hands out node (hash(key) + WARREN_CLUSTER_SEED) % N
        first."""
        seed = int(os.environ.get("WARREN_CLUSTER_SEED") or 0)
        with self._turn_lock:
            self._turn = (zlib.crc32(key.encode()) + seed) % len(self.ports)
            self.used = []

    def _next_port(self, node):
        ports = self.ports
        with self._turn_lock:
            if node is None:
                node = self._turn % len(ports)
                self._turn += 1
            if self.nodes:
                self.used.append(node + 1)
        return ports[node]

    @property
    def url(self):
        return "amqp://%s:%s@%s:%d/%s" % (
            urllib.parse.quote(self.user, safe=""), urllib.parse.quote(self.password, safe=""),
            self.host, self.port, urllib.parse.quote(self.vhost, safe=""))

    def params(self, **kw):
        """pika parameters; in cluster mode the next node in turn, or ``node=i`` (0-based)
        pins it; ``port=`` is used as given."""
        user = kw.pop("user", self.user)
        password = kw.pop("password", self.password)
        node = kw.pop("node", None)
        port = kw.pop("port", None)
        if port is None:
            port = self._next_port(node)
        kw.setdefault("virtual_host", self.vhost)
        kw.setdefault("blocked_connection_timeout", 10)
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("stack_timeout", 10)
        kw.setdefault("connection_attempts", 1)
        return pika.ConnectionParameters(host=self.host, port=port,
                                         credentials=pika.PlainCredentials(user, password),
                                         **kw)

    def connect(self, **kw):
        return pika.BlockingConnection(self.params(**kw))

    @property
    def version(self):
        return str(self.server_properties.get("version", ""))

    @property
    def is_warren(self):
        return str(self.server_properties.get("product", "")) == "Warren"

    @property
    def is_rabbitmq3(self):
        return (str(self.server_properties.get("product", "")) == "RabbitMQ"
                and self.version.startswith("3."))


_BROKER = None


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_tcp(host, port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Node:
    """One node of a cluster started by ``_start_cluster``."""

    def __init__(self, i, root):
        self.i = i  # 1-based
        self.name = "warren@n%d" % i
        self.dir = os.path.join(root, "n%d" % i)
        self.data_dir = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "warren.log")  # stderr
        self.file_log = os.path.join(self.dir, "warren-file.log")  # --log-file
        self.proc = None
        self.port = self.http_port = self.prometheus_port = self.cluster_port = None

    def log_tail(self, nbytes=3000, since=0):
        try:
            with open(self.log, "rb") as f:
                f.seek(max(since, os.path.getsize(self.log) - nbytes))
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no log: %r)" % e

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0


def _free_ports(n):
    """n distinct free ports (all bound at once, then let go)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_get(port, path, timeout=2.0):
    """(status, body) of GET http://127.0.0.1:port/path as guest; (0, error) if unreachable."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        return 0, repr(e)


def _node_ready(n):
    """None when node n serves clients, else why not."""
    try:
        socket.create_connection(("127.0.0.1", n.port), timeout=0.5).close()
    except OSError as e:
        return "AMQP port %d: %r" % (n.port, e)
    status, body = _http_get(n.http_port, "/api/health/checks/ready-to-serve-clients")
    if status != 200:
        return "ready-to-serve-clients: %s %s" % (status, body[:200])
    return None


def _all_running(n, count):
    """None when node n's /api/nodes lists `count` nodes, all running, else why not."""
    status, body = _http_get(n.http_port, "/api/nodes")
    if status != 200:
        return "/api/nodes: %s %s" % (status, body[:200])
    try:
        running = [x.get("name") for x in json.loads(body) if x.get("running")]
    except (ValueError, AttributeError) as e:
        return "/api/nodes: %r in %s" % (e, body[:200])
    if len(running) != count:
        return "/api/nodes lists %d running: %s" % (len(running), running)
    return None


def _kill(proc):
    if proc is not None and proc.poll() is None:
        proc.kill()  # by PID (Popen object), never by name
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


CLUSTER_SECRET = "warren-pika-suite-" + uuid.uuid4().hex


def _spawn_cluster(binary, tmpdir, count, config):
    """Starts count nodes at once on fresh ports; returns the Node list."""
    nodes = [Node(i, tmpdir) for i in range(1, count + 1)]
    ports = _free_ports(4 * count)
    for k, n in enumerate(nodes):
        n.port, n.http_port, n.prometheus_port, n.cluster_port = ports[4 * k:4 * k + 4]
    peers = ",".join("127.0.0.1:%d" % n.cluster_port for n in nodes)
    env = dict(os.environ, WARREN_CLUSTER_SECRET=CLUSTER_SECRET)
    env.pop("WARREN_PEERS", None)
    for n in nodes:
        shutil.rmtree(n.dir, ignore_errors=True)
        os.makedirs(n.data_dir)
        with open(n.log, "wb") as log:
            n.proc = subprocess.Popen(
                [binary, "server", "--node-name", n.name, "--data-dir", n.data_dir,
                 "--amqp-addr", "127.0.0.1:%d" % n.port,
                 "--http-addr", "127.0.0.1:%d" % n.http_port,
                 "--prometheus-addr", "127.0.0.1:%d" % n.prometheus_port,
                 "--cluster-addr", "127.0.0.1:%d" % n.cluster_port,
                 "--advertise-addr", "127.0.0.1:%d" % n.cluster_port,
                 "--peers", peers, "--log-file", n.file_log, "--config", config],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    return nodes


def _start_cluster(binary, count, timeout=60.0):
    """Starts a count-node cluster (see the module docstring); returns a Broker."""
    tmpdir = tempfile.mkdtemp(prefix="warren-cluster-test-")
    config = os.path.join(tmpdir, "warren.toml")
    with open(config, "w") as f:
        f.write(access_setup_toml())
    deadline = time.monotonic() + timeout
    for attempt in range(3):
        nodes = _spawn_cluster(binary, tmpdir, count, config)
        why, exited = {}, []
        while time.monotonic() < deadline:
            exited = [n for n in nodes if n.proc.poll() is not None]
            if exited:
                why = {n.name: "exited with %s" % n.proc.returncode for n in exited}
                break
            why = {n.name: _node_ready(n) for n in nodes}
            if not any(why.values()):
                why = {nodes[0].name: _all_running(nodes[0], count)}
                if not any(why.values()):
                    b = Broker("127.0.0.1", nodes[0].port, kind="warren", proc=nodes[0].proc,
                               tmpdir=tmpdir, nodes=nodes)
                    b.http_port = nodes[0].http_port
                    b.prometheus_port = nodes[0].prometheus_port
                    return b
            time.sleep(0.2)
        for n in nodes:
            _kill(n.proc)
        # A port taken by someone else between _free_ports and the bind: start again on new ones.
        if exited and time.monotonic() < deadline and any(
                "Address already in use" in n.log_tail() for n in exited):
            continue
        break
    tails = "\n".join("===== %s (%s) log tail =====\n%s" % (n.name, n.log, n.log_tail())
                      for n in nodes)
    pytest.exit("the %d-node warren cluster did not become ready (%s): %s\n%s"
                % (count, "a node stopped" if exited else "waited %d s" % timeout,
                   {k: v for k, v in why.items() if v}, tails), returncode=3)


def _start_broker():
    url = os.environ.get("AMQP_URL")
    if url:
        p = pika.URLParameters(url)
        return Broker(p.host, p.port, p.virtual_host, p.credentials.username,
                      p.credentials.password, kind="rabbitmq-url")
    binary = os.environ.get("WARREN_BIN")
    if not binary:
        return None
    cluster = os.environ.get("WARREN_CLUSTER", "")
    if cluster not in ("", "0", "1"):
        if not cluster.isdigit():
            pytest.exit("WARREN_CLUSTER=%r: expected a node count (e.g. 3)" % cluster, returncode=4)
        return _start_cluster(binary, int(cluster))
    tmpdir = tempfile.mkdtemp(prefix="warren-test-")
    amqp_port = _free_port()
    http_port = _free_port()
    prometheus_port = _free_port()
    config = os.path.join(tmpdir, "warren.toml")
    with open(config, "w") as f:
        f.write(access_setup_toml())
    data_dir = os.path.join(tmpdir, "data")
    os.makedirs(data_dir)
    log = open(os.path.join(tmpdir, "warren.log"), "wb")
    proc = subprocess.Popen(
        [binary, "server", "--amqp-addr", "127.0.0.1:%d" % amqp_port,
         "--http-addr", "127.0.0.1:%d" % http_port,
         "--prometheus-addr", "127.0.0.1:%d" % prometheus_port, "--data-dir", data_dir,
         "--log-file", os.path.join(tmpdir, "warren-file.log"),
         "--config", config],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    if not _wait_tcp("127.0.0.1", amqp_port, 20, proc):
        proc.kill()
        proc.wait(5)
        with open(os.path.join(tmpdir, "warren.log"), "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        pytest.exit("warren did not accept TCP on 127.0.0.1:%d within 20 s; log:\n%s"
                    % (amqp_port, tail), returncode=3)
    b = Broker("127.0.0.1", amqp_port, kind="warren", proc=proc, tmpdir=tmpdir)
    b.http_port = http_port
    b.prometheus_port = prometheus_port
    return b


@pytest.fixture(scope="session")
def broker():
    if _BROKER is None:
        pytest.skip("no broker: set AMQP_URL=amqp://guest:guest@127.0.0.1:5673/%2F "
                    "(RabbitMQ) or WARREN_BIN=/path/to/warren")
    return _BROKER


def _mgmt_base_url(b):
    """(url, explicit): the Warren started here is asked on its own --http-addr
    (a MGMT_URL left in the environment must not point it at RabbitMQ)."""
    port = getattr(b, "http_port", None)
    if b.kind == "warren" and port:
        return "http://127.0.0.1:%d" % port, True
    url = os.environ.get("MGMT_URL")
    if url:
        return url, True
    return "http://127.0.0.1:15673", False


@pytest.fixture(scope="session")
def mgmt(broker):
    """Client for the management HTTP API of the broker under test (mgmt.Mgmt)."""
    url, explicit = _mgmt_base_url(broker)
    api = Mgmt(url, broker.user, broker.password)
    deadline = time.monotonic() + 20
    while True:
        try:
            api.get("/api/overview")
            return api
        except OSError as e:
            if time.monotonic() >= deadline or not explicit:
                if explicit:
                    pytest.fail("management API at %s not reachable: %r" % (url, e))
                pytest.skip("management API at %s not reachable (%r); set MGMT_URL" % (url, e))
            time.sleep(0.2)


@pytest.fixture(scope="session")
def metrics_url(broker):
    """URL of the Prometheus text endpoint of the broker under test."""
    port = getattr(broker, "prometheus_port", None)
    if broker.kind == "warren" and port:
        return "http://127.0.0.1:%d/metrics" % port
    url = os.environ.get("METRICS_URL")
    if url and broker.kind != "warren":
        return url
    pytest.skip("no Prometheus endpoint: set METRICS_URL (RabbitMQ: "
                "http://127.0.0.1:15692/metrics with rabbitmq_prometheus enabled)")


@pytest.fixture
def mgmt_cleanup(mgmt):
    """cleanup(path): DELETE path through the management API at test end
    (last registered first); 404 is fine (the test deleted it already)."""
    paths = []
    yield paths.append
    for p in reversed(paths):
        try:
            mgmt.delete(p)
        except OSError:
            pass


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "rabbit4: behaviour of RabbitMQ 4.x that differs from 3.x; "
                   "skipped when the target reports RabbitMQ 3.x")
    config.addinivalue_line(
        "markers", "mgmt: management HTTP API / Prometheus tests (those listed in "
                   "mgmt_pending.txt are skipped against Warren unless WARREN_MGMT=1)")


def pytest_sessionstart(session):
    global _BROKER
    _BROKER = _start_broker()
    if _BROKER is not None:
        try:
            c = _BROKER.connect()
        except Exception as e:  # noqa: BLE001
            _stop_broker()
            pytest.exit("cannot connect to broker at %s:%d: %r" % (_BROKER.host, _BROKER.port, e),
                        returncode=3)
        _BROKER.server_properties = dict(c._impl.server_properties or {})
        c.close()
        for i in range(1, len(_BROKER.nodes)):
            try:
                _BROKER.connect(node=i).close()
            except Exception as e:  # noqa: BLE001
                _stop_broker()
                pytest.exit("cannot connect to cluster node %s at port %d: %r"
                            % (_BROKER.nodes[i].name, _BROKER.nodes[i].port, e), returncode=3)


def _stop_broker():
    b = _BROKER
    if b is not None and b.nodes:
        for n in b.nodes:
            _kill(n.proc)
    elif b is not None and b.proc is not None and b.proc.poll() is None:
        b.proc.kill()  # by PID (Popen object), never by name
        try:
            b.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def pytest_sessionfinish(session, exitstatus):
    _stop_broker()
    b = _BROKER
    if b is not None and b.tmpdir and exitstatus == 0 and not os.environ.get("WARREN_KEEP_TMP"):
        shutil.rmtree(b.tmpdir, ignore_errors=True)
    elif b is not None and b.tmpdir:
        print("\nwarren data/log kept in %s" % b.tmpdir)


def pytest_report_header(config):
    b = _BROKER
    if b is None:
        return "broker: none (set AMQP_URL or WARREN_BIN)"
    if b.clustered:
        return "broker: warren cluster of %d nodes, AMQP ports %s (node 1: http %d, " \
               "prometheus %d), data/logs in %s; product=%s version=%s" % (
                   len(b.nodes), ",".join(map(str, b.ports)), b.http_port, b.prometheus_port,
                   b.tmpdir, b.server_properties.get("product"), b.version)
    return "broker: %s %s:%d product=%s version=%s" % (
        b.kind, b.host, b.port, b.server_properties.get("product"), b.version)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    b = _BROKER
    if b is not None and b.clustered:
        b.start_turn(item.nodeid)
        item._warren_log_sizes = [n.log_size() for n in b.nodes]
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    b = _BROKER
    if b is None or not b.clustered or not rep.failed or call.when == "teardown":
        return
    sizes = getattr(item, "_warren_log_sizes", None) or [0] * len(b.nodes)
    text = ["connections went to nodes (in order): %s" % (b.used or "none")]
    for n, since in zip(b.nodes, sizes):
        lines = n.log_tail(nbytes=6000, since=since).splitlines()[-25:]
        text.append("----- %s (amqp %d) logged during the test (last %d lines) -----"
                    % (n.name, n.port, len(lines)))
        text += lines
        if n.proc.poll() is not None:
            text.append("!!! %s has exited (%s)" % (n.name, n.proc.returncode))
    rep.sections.append(("warren cluster", "\n".join(text)))


def pytest_collection_modifyitems(config, items):
    b = _BROKER
    if b is not None and (b.kind == "warren" or b.is_warren) and not os.environ.get("WARREN_MGMT"):
        pending_file = os.path.join(os.path.dirname(__file__), "mgmt_pending.txt")
        with open(pending_file) as f:
            pending = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        not_yet = pytest.mark.skip(reason="not built in Warren yet (mgmt_pending.txt; "
                                          "WARREN_MGMT=1 runs it)")
        for item in items:
            if "mgmt" in item.keywords and item.name in pending:
                item.add_marker(not_yet)
    if b is not None and not b.is_warren:
        plugin = pytest.mark.skip(reason="built into Warren; RabbitMQ needs a plugin")
        for item in items:
            if "warren" in item.keywords:
                item.add_marker(plugin)
    if b is None or not b.is_rabbitmq3 or os.environ.get("RUN_RABBIT4_TESTS"):
        return
    skip = pytest.mark.skip(reason="RabbitMQ 4.x behaviour; target is RabbitMQ %s" % b.version)
    for item in items:
        if "rabbit4" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------
# helpers available to tests

def uniq(prefix="t"):
    """A name no other test (or earlier run) uses."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


@pytest.fixture
def connect(broker):
    """connect(**kw) -> pika.BlockingConnection; all are closed at test end."""
    conns = []

    def _connect(**kw):
        c = broker.connect(**kw)
        conns.append(c)
        return c

    yield _connect
    for c in conns:
        try:
            if c.is_open:
                c.close()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def conn(connect):
    return connect()


@pytest.fixture
def ch(conn):
    return conn.channel()


# --------------------------------------------------------------------------
# access setup fixture

def _rabbitmqctl(*args):
    cmd = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))
    node = os.environ.get("RABBITMQ_NODENAME", "ref@localhost")
    full = cmd + ["-n", node] + list(args)
    return subprocess.run(full, capture_output=True, text=True, timeout=60)


def _can_login(broker, user, password, vhost="/"):
    try:
        broker.connect(user=user, password=password, virtual_host=vhost).close()
        return True
    except pika.exceptions.AMQPConnectionError:
        return False


def _setup_with_rabbitmqctl():
    """Create ACCESS_SETUP with rabbitmqctl; returns an error string or None."""
    if shutil.which(shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))[0]) is None:
        return "rabbitmqctl not found"
    r = _rabbitmqctl("list_users")
    if r.returncode != 0:
        return "rabbitmqctl failed (set RABBITMQ_NODENAME?): %s" % (r.stderr or r.stdout)
    for v in ACCESS_SETUP["vhosts"]:
        if v != "/":
            _rabbitmqctl("add_vhost", v)  # may already exist
    for u in ACCESS_SETUP["users"]:
        if u["name"] == "guest":
            continue
        _rabbitmqctl("delete_user", u["name"])  # reset to a known state
        for args in (("add_user", u["name"], u["password"]),
                     ("set_user_tags", u["name"]) + tuple(u["tags"])):
            r = _rabbitmqctl(*args)
            if r.returncode != 0:
                return "rabbitmqctl %s failed: %s" % (args[0], r.stderr)
    for p in ACCESS_SETUP["permissions"]:
        if p["user"] == "guest":
            continue
        r = _rabbitmqctl("set_permissions", "-p", p["vhost"], p["user"],
                         p["configure"], p["write"], p["read"])
        if r.returncode != 0:
            return "rabbitmqctl set_permissions failed: %s" % r.stderr
    return None


@pytest.fixture(scope="session")
def access_setup(broker):
    """Make sure ACCESS_SETUP exists on the broker; returns ACCESS_SETUP.

    WARREN_BIN: it was written into --config before the broker started.
    AMQP_URL: created with rabbitmqctl, then checked by logging in (so an
    externally started broker that is not the rabbitmqctl node is detected)."""
    if broker.kind == "warren":
        return ACCESS_SETUP
    err = _setup_with_rabbitmqctl()
    alice = ACCESS_SETUP["users"][1]
    if not _can_login(broker, alice["name"], alice["password"]):
        pytest.skip("access-control users are not present on the AMQP_URL broker (%s). For "
                    "RabbitMQ set RABBITMQ_NODENAME/RABBITMQCTL; for a Warren started by hand "
                    "pass it --config with conftest.access_setup_toml()" % (err or "rabbitmqctl "
                    "ran against another node?"))
    return ACCESS_SETUP


# --------------------------------------------------------------------------
# small utilities

def wait_for(pred, timeout=5.0, interval=0.02, conn=None):
    """Poll pred() until truthy or timeout; if conn given, pump its I/O meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        if conn is not None:
            conn.process_data_events(time_limit=interval)
        else:
            time.sleep(interval)


def drain(ch, queue, expected=None, timeout=5.0, auto_ack=True):
    """basic.get messages from queue until it is empty (or `expected` reached)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if m is None:
            if expected is None or len(out) >= expected:
                break
            time.sleep(0.02)
            continue
        out.append(body)
        if expected is not None and len(out) >= expected:
            break
    return out


def get_message(ch, queue, timeout=5.0, auto_ack=True):
    """basic.get until a message arrives (bounded); returns (method, props, body)."""
    deadline = time.monotonic() + timeout
    while True:
        m, props, body = ch.basic_get(queue, auto_ack=auto_ack)
        if m is not None:
            return m, props, body
        if time.monotonic() >= deadline:
            raise AssertionError("no message on %r within %s s" % (queue, timeout))
        time.sleep(0.02)


def consume_n(conn, ch, queue, n, timeout=5.0, auto_ack=True):
    """Consume until n messages arrived (or timeout); returns list of (method, props, body)."""
    got = []
    for item in ch.consume(queue, auto_ack=auto_ack, inactivity_timeout=timeout):
        if item == (None, None, None):
            break
        got.append(item)
        if len(got) >= n:
            break
    ch.cancel()
    return got


def channel_error(fn, *args, **kw):
    """Run fn; it must make the broker close the channel. Returns (code, text)."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        fn(*args, **kw)
    return e.value.reply_code, e.value.reply_text


def connection_error(fn, *args, **kw):
    """Run fn; it must make the broker close the connection. Returns (code, text)."""
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        fn(*args, **kw)
    return e.value.reply_code, e.value.reply_text


class Thread(threading.Thread):
    """A thread whose exception is re-raised by join()."""

    def __init__(self, target, *args):
        super().__init__(target=target, args=args, daemon=True)
        self.exc = None

    def run(self):
        try:
            super().run()
        except BaseException as e:  # noqa: BLE001
            self.exc = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.is_alive():
            raise TimeoutError("thread still running after %s s" % timeout)
        if self.exc is not None:
            raise self.exc
