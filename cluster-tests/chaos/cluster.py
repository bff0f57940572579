"""The compose cluster a chaos run works on: brought up with ``scripts/cluster`` under its own
compose project, env file, subnet and host ports (so it never touches a cluster a developer
runs), its nodes reached both through HAProxy and straight at their container addresses
(the host routes to the compose bridge network), and the Docker commands faults use.

Every container touched is one of this project's, found by ``docker-compose ps -q``.
"""

import base64
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODES = ["warren-1", "warren-2", "warren-3"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Three Warren nodes and HAProxy in containers (deploy/docker-compose.yml)."""

    def __init__(self, workdir, project="warrenchaos", subnet="172.29.86"):
        self.project, self.subnet = project, subnet
        self.env_file = os.path.join(workdir, "cluster.env")
        self.amqp, self.http, self.stats = free_port(), free_port(), free_port()
        self.env = dict(
            os.environ,
            WARREN_PROJECT=project,
            WARREN_ENV_FILE=self.env_file,
            WARREN_SUBNET_PREFIX=subnet,
            WARREN_AMQP_PORT=str(self.amqp),
            WARREN_HTTP_PORT=str(self.http),
            WARREN_STATS_PORT=str(self.stats),
        )
        self._ids = {}

    # -- lifecycle ---------------------------------------------------------------------

    def script(self, *args, timeout=300, check=True):
        r = subprocess.run(
            [os.path.join(ROOT, "scripts", "cluster"), *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )
        if check and r.returncode != 0:
            raise RuntimeError("scripts/cluster %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    def up(self):
        """A fresh cluster: what an earlier run of this project left (containers, volumes
        made with another secret) goes first."""
        self.down()
        self.script("up", timeout=900)
        self._ids = {}

    def down(self):
        self.script("down", timeout=120, check=False)

    def compose(self, *args, timeout=120):
        return self.script("compose", *args, timeout=timeout)

    def container(self, service):
        """The container id of `service` (a node or "haproxy")."""
        if service not in self._ids:
            r = subprocess.run(
                ["docker", "ps", "-aq", "--filter", "label=com.docker.compose.project=%s" % self.project,
                 "--filter", "label=com.docker.compose.service=%s" % service],
                capture_output=True, text=True, timeout=30, check=True,
            )
            ids = r.stdout.split()
            if len(ids) != 1:
                raise RuntimeError("expected one container for %s, found %r" % (service, ids))
            self._ids[service] = ids[0]
        return self._ids[service]

    def docker(self, *args, timeout=60):
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=True)

    # -- addresses ---------------------------------------------------------------------

    def ip(self, node):
        return "%s.%d" % (self.subnet, 11 + NODES.index(node))

    @property
    def haproxy_ip(self):
        return "%s.10" % self.subnet

    @property
    def gateway_ip(self):
        """Where the host's connections to containers come from."""
        return "%s.1" % self.subnet

    def endpoint(self, via):
        """(host, port) of AMQP through HAProxy ("haproxy") or straight at a node."""
        if via == "haproxy":
            return ("127.0.0.1", self.amqp)
        return (self.ip(via), 5672)

    def credentials(self):
        values = {}
        with open(self.env_file) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.strip().split("=", 1)
                    values[k] = v
        return values["WARREN_DEFAULT_USER"], values["WARREN_DEFAULT_PASS"]

    # -- management API ----------------------------------------------------------------

    def api(self, path, via="haproxy", timeout=3, method="GET", body=None):
        """`method` (GET) `path` of the management API through HAProxy or at a node, with a
        JSON `body`; the answer's JSON (None when empty)."""
        base = "127.0.0.1:%d" % self.http if via == "haproxy" else "%s:15672" % self.ip(via)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://%s%s" % (base, path), data=data, method=method)
        user, password = self.credentials()
        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return json.loads(text) if text.strip() else None

    def node_name(self, queue, node):
        """The cluster's name for service `node`, as `queue`'s members list it."""
        q = self.api("/api/queues/%%2F/%s" % queue)
        for m in q.get("members") or []:
            if m.split("@")[-1] == node:
                return m
        raise RuntimeError("%s is not a member of %s: %s" % (node, queue, q.get("members")))

    def api_or_none(self, path, via="haproxy", timeout=3):
        try:
            return self.api(path, via, timeout)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def leader(self, queue, within=30.0):
        """The node (service name) leading quorum queue `queue`, as the cluster reports it."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            q = self.api_or_none("/api/queues/%%2F/%s" % queue)
            leader = (q or {}).get("leader") or ""
            node = leader.split("@")[-1]
            if node in NODES:
                return node
            time.sleep(0.3)
        raise RuntimeError("no leader of %s within %ss" % (queue, within))

    def store_leader(self, within=30.0):
        """The node whose log last said it leads the delayed exchange's store (and has not
        said since that it no longer does)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            leading = []
            for node in NODES:
                log = self.logs(node, tail=20000, since_start=True)
                led = log.rfind("this node leads the delayed exchange's store")
                lost = log.rfind("this node no longer leads the delayed exchange's store")
                if led >= 0 and led > lost:
                    leading.append(node)
            if len(leading) == 1:
                return leading[0]
            time.sleep(0.5)
        raise RuntimeError("no single leader of the delayed exchange's store within %ss" % within)

    def ready(self, node):
        """Whether `node` answers its readiness check (its own view: a majority, a leader)."""
        r = self.api_or_none("/api/health/checks/ready-to-serve-clients", via=node, timeout=2)
        return r is not None and r.get("status") == "ok"

    def await_ready(self, within=120.0):
        """Waits until every node is ready and HAProxy sends clients to each."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(self.ready(n) for n in NODES) and self.haproxy_all_up():
                return
            time.sleep(0.5)
        raise RuntimeError("the cluster did not become ready within %ss" % within)

    def haproxy_all_up(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/;csv" % self.stats, timeout=2) as r:
                rows = r.read().decode().splitlines()
        except (urllib.error.URLError, OSError):
            return False
        up = [row for row in rows if row.startswith("warren_amqp,warren-") and ",UP," in row]
        return len(up) >= len(NODES)

    def logs(self, service, tail=200, since_start=False):
        """The container's log (`since_start`: of its current run only; a container killed
        and started again keeps its earlier runs' lines)."""
        cid = self.container(service)
        since = []
        if since_start:
            started = self.docker("inspect", "-f", "{{.State.StartedAt}}", cid).stdout.strip()
            since = ["--since", started]
        r = subprocess.run(["docker", "logs", "--tail", str(tail), *since, cid],
                           capture_output=True, text=True, timeout=30)
        return r.stdout + r.stderr
