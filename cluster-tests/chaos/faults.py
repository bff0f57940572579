"""The faults a chaos run injects into the compose cluster, each as Docker does it here
(``../shared/reference/deploy.md``): ``docker kill -s KILL`` and ``docker start`` for crashes,
``docker pause`` (the cgroup freezer) for stalls, iptables run from a sidecar that shares the
target's network namespace for partitions and packet loss (the target needs neither the
capability nor the tool), ``tc tbf`` for a slow link (netem does not exist in this kernel),
``docker stop`` (SIGTERM) for a rolling restart; the management API for an operator's
leadership transfer, member removal and addition, and maintenance mode.

A fault picks its target (the queue leader, a follower, ...) with the run's seeded random
generator, starts, is held for its duration while the workload runs, and heals. ``heal_all``
undoes whatever a failed run may have left behind.
"""

import subprocess
import time

from .cluster import NODES

# The sidecar image: HAProxy's image carries iptables and iproute2 for this.
SIDECAR = "warren-haproxy:latest"


def sidecar(cluster, node, script):
    """Runs `script` (sh) in `node`'s network namespace with NET_ADMIN."""
    cluster.docker("run", "--rm", "--network", "container:%s" % cluster.container(node),
                   "--cap-add", "NET_ADMIN", SIDECAR, "sh", "-ec", script, timeout=60)


def drop_from(ips, probability=None):
    """iptables rules dropping traffic to and from `ips` (a share of it, with `probability`)."""
    chance = " -m statistic --mode random --probability %s" % probability if probability else ""
    rules = []
    for ip in ips:
        rules.append("iptables -A INPUT -s %s%s -j DROP" % (ip, chance))
        rules.append("iptables -A OUTPUT -d %s%s -j DROP" % (ip, chance))
    return "; ".join(rules)


class Fault:
    """One kind of fault: `name`, how long it is held, how it picks a target."""

    name = "fault"
    hold = 8.0

    def pick(self, cluster, queue, rng):
        return cluster.leader(queue)

    def start(self, cluster, target):
        raise NotImplementedError

    def heal(self, cluster, target):
        raise NotImplementedError

    def run(self, cluster, target, record):
        """Starts, holds and heals, recording both moments (`record(phase)`)."""
        record("start")
        self.start(cluster, target)
        time.sleep(self.hold)
        record("heal")
        self.heal(cluster, target)


def follower(cluster, queue, rng):
    leader = cluster.leader(queue)
    return rng.choice([n for n in NODES if n != leader])


class Kill(Fault):
    """``kill -9`` of a node's process (the container), started again after `hold`: the
    queue's leader, a follower, or the delayed exchange's store's leader."""

    def __init__(self, whom="leader", hold=5.0):
        self.whom, self.hold = whom, hold
        self.name = "kill-%s" % whom

    def pick(self, cluster, queue, rng):
        if self.whom == "store-leader":
            return cluster.store_leader()
        return follower(cluster, queue, rng) if self.whom == "follower" else cluster.leader(queue)

    def start(self, cluster, target):
        cluster.docker("kill", "-s", "KILL", cluster.container(target))

    def heal(self, cluster, target):
        cluster.docker("start", cluster.container(target))


class KillAll(Fault):
    """All three nodes killed at once (a power loss): nothing confirmed may be lost."""

    name = "kill-all"
    hold = 3.0

    def pick(self, cluster, queue, rng):
        return "all"

    def start(self, cluster, target):
        cluster.docker("kill", "-s", "KILL", *[cluster.container(n) for n in NODES])

    def heal(self, cluster, target):
        cluster.docker("start", *[cluster.container(n) for n in NODES])


class Pause(Fault):
    """A node frozen (``docker pause``) for `hold` seconds: a long GC pause or VM stall."""

    def __init__(self, hold, whom="leader"):
        self.hold, self.whom = hold, whom
        self.name = "pause-%s-%ds" % (whom, hold)

    def pick(self, cluster, queue, rng):
        return follower(cluster, queue, rng) if self.whom == "follower" else cluster.leader(queue)

    def start(self, cluster, target):
        cluster.docker("pause", cluster.container(target))

    def heal(self, cluster, target):
        cluster.docker("unpause", cluster.container(target))


class Partition(Fault):
    """A node cut off from the other nodes (clients still reach it): `whom` is the leader or
    a follower. ``bridge`` cuts only the link between the leader and one follower, so each
    of them still sees a majority through the third node."""

    hold = 10.0

    def __init__(self, whom):
        self.whom = whom
        self.name = "partition-%s" % whom

    def pick(self, cluster, queue, rng):
        if self.whom == "follower":
            return follower(cluster, queue, rng)
        return cluster.leader(queue)

    def cut(self, cluster, target):
        if self.whom == "bridge":
            leader = target
            return [cluster.ip(n) for n in NODES if n != leader][:1]
        return [cluster.ip(n) for n in NODES if n != target]

    def start(self, cluster, target):
        sidecar(cluster, target, drop_from(self.cut(cluster, target)))

    def heal(self, cluster, target):
        sidecar(cluster, target, "iptables -F")


class ClientsCut(Fault):
    """The clients (HAProxy and the host's direct connections) cut from one node, the
    leader; the nodes still reach each other."""

    name = "partition-clients"
    hold = 10.0

    def start(self, cluster, target):
        sidecar(cluster, target, drop_from([cluster.haproxy_ip, cluster.gateway_ip]))

    def heal(self, cluster, target):
        sidecar(cluster, target, "iptables -F")


class Loss(Fault):
    """A share of one node's packets from and to everyone lost."""

    hold = 10.0

    def __init__(self, percent):
        self.share = percent / 100.0
        self.name = "loss-%d%%" % percent

    def pick(self, cluster, queue, rng):
        return rng.choice(NODES)

    def start(self, cluster, target):
        others = [cluster.ip(n) for n in NODES if n != target] + [cluster.haproxy_ip, cluster.gateway_ip]
        sidecar(cluster, target, drop_from(others, self.share))

    def heal(self, cluster, target):
        sidecar(cluster, target, "iptables -F")


class SlowLink(Fault):
    """The leader's link throttled to 1 Mbit/s with up to 400 ms of queueing (tc tbf)."""

    name = "slow-link"
    hold = 10.0

    def start(self, cluster, target):
        sidecar(cluster, target, "tc qdisc add dev eth0 root tbf rate 1mbit burst 32kbit latency 400ms")

    def heal(self, cluster, target):
        sidecar(cluster, target, "tc qdisc del dev eth0 root")


class HaproxyRestart(Fault):
    """HAProxy killed and started again: every client through it loses its connection."""

    name = "haproxy-restart"
    hold = 2.0

    def pick(self, cluster, queue, rng):
        return "haproxy"

    def start(self, cluster, target):
        cluster.docker("kill", "-s", "KILL", cluster.container("haproxy"))

    def heal(self, cluster, target):
        cluster.docker("start", cluster.container("haproxy"))


class RollingRestart(Fault):
    """Every node stopped gracefully (SIGTERM) and started again in turn, the next only once
    the cluster is ready again, as an operator upgrades it."""

    name = "rolling-restart"

    def pick(self, cluster, queue, rng):
        return "all"

    def run(self, cluster, target, record):
        record("start")
        for node in NODES:
            cluster.docker("stop", "-t", "30", cluster.container(node), timeout=60)
            cluster.docker("start", cluster.container(node))
            cluster.await_ready(within=90)
        record("heal")


class MoveLeader(Fault):
    """An operator moves the queue's leadership to a follower (`transfer_leadership`)."""

    name = "transfer-leadership"
    hold = 4.0

    def pick(self, cluster, queue, rng):
        self.queue = queue
        return follower(cluster, queue, rng)

    def start(self, cluster, target):
        name = cluster.node_name(self.queue, target)
        cluster.api("/api/queues/quorum/%%2F/%s/transfer_leadership" % self.queue, method="POST",
                    body={"node": name}, timeout=15)

    def heal(self, cluster, target):
        pass


class MemberChurn(Fault):
    """The leader's replica removed (`delete_member`: it hands over and retires), then added
    back (`add_member`: it catches up as a learner before it votes)."""

    name = "member-churn"
    hold = 8.0

    def pick(self, cluster, queue, rng):
        self.queue = queue
        return cluster.leader(queue)

    def start(self, cluster, target):
        self.member = cluster.node_name(self.queue, target)
        cluster.api("/api/queues/quorum/%%2F/%s/replicas/delete" % self.queue, method="DELETE",
                    body={"node": self.member}, timeout=15)

    def heal(self, cluster, target):
        cluster.api("/api/queues/quorum/%%2F/%s/replicas/add" % self.queue, method="POST",
                    body={"node": self.member}, timeout=15)


class DrainLeader(Fault):
    """The leader's node put into maintenance mode (`drain`: leaderships handed over, its
    clients closed, no new ones), then revived."""

    name = "drain-leader"
    hold = 8.0

    def start(self, cluster, target):
        cluster.api("/api/node/drain", via=target, method="POST", body={}, timeout=30)

    def heal(self, cluster, target):
        cluster.api("/api/node/revive", via=target, method="POST", body={}, timeout=15)


def heal_all(cluster):
    """Undoes every fault: every container running and unpaused, no rule left."""
    for node in NODES:
        cid = cluster.container(node)
        subprocess.run(["docker", "unpause", cid], capture_output=True, timeout=30)
        subprocess.run(["docker", "start", cid], capture_output=True, timeout=30)
    subprocess.run(["docker", "start", cluster.container("haproxy")], capture_output=True, timeout=30)
    for node in NODES:
        try:
            sidecar(cluster, node, "iptables -F; tc qdisc del dev eth0 root 2>/dev/null || true")
        except subprocess.CalledProcessError:
            pass
        try:
            cluster.api("/api/node/revive", via=node, method="POST", body={}, timeout=5)
        except OSError:
            pass


def profile(name):
    """The faults of a profile, each with its number of cycles."""
    if name == "quick":
        faults = [
            Kill("leader"), Kill("follower"), Kill("store-leader"), Pause(5), Partition("leader"),
            Partition("follower"),
            Partition("bridge"), ClientsCut(), Loss(10), SlowLink(), HaproxyRestart(), KillAll(),
            RollingRestart(), MoveLeader(), MemberChurn(), DrainLeader(),
        ]
        return [(f, 1) for f in faults]
    if name == "full":
        faults = [
            Kill("leader"), Kill("follower"), Kill("store-leader"), KillAll(), Pause(5), Pause(15), Pause(60),
            Pause(15, "follower"),
            Partition("leader"), Partition("follower"), Partition("bridge"), ClientsCut(), Loss(10), Loss(30),
            SlowLink(), HaproxyRestart(), RollingRestart(), MoveLeader(), MemberChurn(), DrainLeader(),
        ]
        return [(f, 10) for f in faults]
    raise ValueError("unknown profile %r (quick or full)" % name)
