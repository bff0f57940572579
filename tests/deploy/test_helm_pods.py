"""The Helm chart's rendered pod spec really forms a cluster.

No Kubernetes runs here, so this test plays the kubelet for the StatefulSet ``helm template``
renders: it takes the Warren container's ``command``, ``args`` and ``env`` as Kubernetes would
run them (``fieldRef`` metadata.name/namespace resolved for each pod, ``secretKeyRef`` from the
rendered Secret, ``$(VAR)`` expanded as the kubelet expands it), and starts ``replicaCount``
containers of the image on a user-defined Docker network, each with its pod's hostname and the
DNS name the headless Service would give it (``<pod>.<headless>.<namespace>.svc.<domain>``) as
its network alias, the pod's volume mounts (emptyDirs as tmpfs, the data claim as an anonymous
volume), its security context (user, groups, read-only root filesystem, capabilities) and its
resource limits. Then the nodes must form one cluster: every node's ``warren ctl
cluster_status`` lists all the pods' nodes running, with one cluster name, and the readiness
probe's own command passes on every node; each node's memory alarm is 0.6 of the pod's memory
limit, which Warren reads from its cgroup.

Needs Docker and the image ``warren:latest`` (``WARREN_IMAGE`` names another), which
tests/deploy/test_compose.py builds through ``scripts/cluster up``; ``helm`` comes from
tests/python/helm_tools.py. The network and containers get names no other run uses and are
removed (with their anonymous volumes) whatever happens.
"""

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import helm_tools  # noqa: E402
from helm_tools import container, one  # noqa: E402

pytestmark = pytest.mark.timeout(300)

IMAGE = os.environ.get("WARREN_IMAGE") or "warren:latest"
RELEASE = "warren"
NAMESPACE = "messaging"
USER = "helmtest"
PASSWORD = "helmtest-pass-1"
CLUSTER_SECRET = "helmtest-cluster-secret-0123456789"
FORM_WITHIN = 60  # seconds for the pods to form one ready cluster
DOCKER_TIMEOUT = 60


def docker(*args, timeout=DOCKER_TIMEOUT, check=True):
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, "docker %s failed (%d):\n%s%s" % (" ".join(args), r.returncode,
                                                                   r.stdout, r.stderr)
    return r


# --------------------------------------------------------------------------
# what the kubelet does with the pod spec

def expand(text, env):
    """Kubernetes' $(VAR) expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
    $(NAME) is the value of NAME when defined, else left as written; $$ is a literal $."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else "$(%s)" % name)
                    i = end + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def secret_data(docs, name):
    """The decoded keys of the rendered Secret `name` (data and stringData)."""
    secret = one(docs, "Secret", name)
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def pod_env(docs, pod, namespace):
    """The container's environment in pod `pod`, in order, as the kubelet builds it."""
    env = {}
    for e in container(docs).get("env", []):
        if "valueFrom" not in e:
            env[e["name"]] = expand(e.get("value", ""), env)
            continue
        src = e["valueFrom"]
        if "fieldRef" in src:
            fields = {"metadata.name": pod, "metadata.namespace": namespace}
            path = src["fieldRef"]["fieldPath"]
            assert path in fields, "this test cannot resolve fieldRef %s (env %s)" % (path, e["name"])
            env[e["name"]] = fields[path]
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            data = secret_data(docs, ref["name"])
            assert ref["key"] in data, "Secret %s has no key %s (env %s)" % (ref["name"], ref["key"], e["name"])
            env[e["name"]] = data[ref["key"]]
        else:
            pytest.fail("this test cannot resolve env %s: %s" % (e["name"], src))
    return env


def entrypoint_and_args(c, env):
    """`command` replaces the image's ENTRYPOINT and `args` its CMD (a command without args
    drops the CMD, as `docker run --entrypoint` does); both get $(VAR) expanded."""
    command = [expand(a, env) for a in c.get("command") or []]
    args = [expand(a, env) for a in c.get("args") or []]
    if command:
        return ["--entrypoint", command[0]], command[1:] + args
    return [], args


def security_options(pod_spec, c):
    """docker run options for the pod's and container's security contexts."""
    psc, csc = pod_spec.get("securityContext") or {}, c.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    opts = []
    if uid is not None:
        opts += ["--user", "%d:%d" % (uid, gid if gid is not None else uid)]
    if psc.get("fsGroup") is not None:
        opts += ["--group-add", str(psc["fsGroup"])]
    if csc.get("readOnlyRootFilesystem"):
        opts.append("--read-only")
    if csc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    for cap in (csc.get("capabilities") or {}).get("drop") or []:
        opts += ["--cap-drop", cap]
    for cap in (csc.get("capabilities") or {}).get("add") or []:
        opts += ["--cap-add", cap]
    return opts


QUANTITY_SUFFIXES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20,
                     "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(q):
    """A Kubernetes memory quantity ("1Gi", "512M", 1073741824) in bytes."""
    m = re.fullmatch(r"([0-9]+)(|k|M|G|T|Ki|Mi|Gi|Ti)", str(q))
    assert m, "this test cannot read the memory quantity %r" % q
    return int(m.group(1)) * QUANTITY_SUFFIXES[m.group(2)]


def resource_options(c):
    """The container's limits, which the kubelet puts on its cgroup (requests only weigh in
    scheduling and CPU shares)."""
    limits = (c.get("resources") or {}).get("limits") or {}
    opts = []
    if "memory" in limits:
        opts += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        cpu = str(limits["cpu"])
        opts += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
    return opts


def volume_options(sts, c):
    """docker run options for the container's mounts: a volumeClaimTemplate becomes an
    anonymous volume (removed with the container), an emptyDir a tmpfs (world-writable, as
    the kubelet makes an emptyDir)."""
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"].get("volumes") or []}
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates") or []}
    opts = []
    for m in c.get("volumeMounts") or []:
        if m["name"] in claims:
            opts += ["--mount", "type=volume,dst=%s" % m["mountPath"]]
        elif "emptyDir" in volumes.get(m["name"], {}):
            opts += ["--tmpfs", "%s:rw,mode=1777" % m["mountPath"]]
        else:
            pytest.fail("this test cannot mount volume %s: %s" % (m["name"], volumes.get(m["name"])))
    return opts


# --------------------------------------------------------------------------
# the pods as containers

class Pod:
    def __init__(self, pod, name, alias, env):
        self.pod = pod      # the pod's name, its hostname
        self.name = name    # the container's name
        self.alias = alias  # its DNS name through the headless Service
        self.env = env      # its environment, resolved

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    repository, _, tag = IMAGE.rpartition(":")
    assert repository and tag and "/" not in tag, "WARREN_IMAGE must be repository:tag, not %r" % IMAGE
    helm = helm_tools.Helm(tmp_path_factory.mktemp("helm"))
    docs = helm.template("--set", "image.repository=%s" % repository, "--set", "image.tag=%s" % tag,
                         "--set", "auth.username=%s" % USER, "--set", "auth.password=%s" % PASSWORD,
                         "--set", "auth.clusterSecret=%s" % CLUSTER_SECRET,
                         namespace=NAMESPACE, release=RELEASE)
    return docs


@pytest.fixture(scope="module")
def pods(rendered):
    """The StatefulSet's pods as running containers: [Pod]."""
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                       text=True, timeout=DOCKER_TIMEOUT)
    if r.returncode != 0:
        pytest.fail("Docker is not available: %s" % r.stderr.strip())
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail("the image %s is missing: build it with `scripts/cluster images` (WARREN_BIN=... to use "
                    "another binary than the release build)" % IMAGE)

    sts = one(rendered, "StatefulSet")
    spec = sts["spec"]
    pod_spec = spec["template"]["spec"]
    c = container(rendered)
    assert c["image"] == IMAGE, c["image"]
    headless = one(rendered, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    domain = "%s.%s.svc.cluster.local" % (headless["metadata"]["name"], NAMESPACE)

    run_id = "%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
    network = "warren-helmtest-%s" % run_id
    names = []
    created_network = False
    try:
        docker("network", "create", "--label", "warren-helmtest=%s" % run_id, network)
        created_network = True
        started = []
        for i in range(spec["replicas"]):
            pod = "%s-%d" % (sts["metadata"]["name"], i)
            env = pod_env(rendered, pod, NAMESPACE)
            entry, args = entrypoint_and_args(c, env)
            name = "%s-%d" % (network, i)
            alias = "%s.%s" % (pod, domain)
            names.append(name)  # removed in the finally below even if `run` times out
            env_opts = [o for k, v in env.items() for o in ("--env", "%s=%s" % (k, v))]
            docker("run", "-d", "--name", name, "--label", "warren-helmtest=%s" % run_id,
                   "--hostname", pod, "--network", network, "--network-alias", alias,
                   "--no-healthcheck",  # Kubernetes ignores the image's HEALTHCHECK; the probes are the spec's
                   *security_options(pod_spec, c), *resource_options(c), *volume_options(sts, c), *env_opts,
                   *entry, IMAGE, *args)
            started.append(Pod(pod, name, alias, env))
        yield started
    finally:
        for name in names:
            docker("rm", "-f", "-v", name, check=False)
        if created_network:
            docker("network", "rm", network, check=False)


def logs(name, lines=40):
    r = docker("logs", "--tail", str(lines), name, check=False)
    return "----- %s -----\n%s%s" % (name, r.stdout, r.stderr)


def test_the_pods_are_given_only_names_the_headless_service_gives(rendered, pods):
    """Docker also resolves a container's hostname (the bare pod name), which Kubernetes does
    not resolve from other pods: every address a node is given to reach or advertise must be
    a pod's DNS name through the headless Service, or passing here would prove nothing."""
    (port,) = [p["containerPort"] for p in container(rendered)["ports"] if p["name"] == "cluster"]
    addresses = sorted("%s:%d" % (p.alias, port) for p in pods)
    for p in pods:
        assert sorted(p.env["WARREN_PEERS"].split(",")) == addresses, (p.pod, p.env["WARREN_PEERS"])
        assert p.env["WARREN_ADVERTISE_ADDR"] == "%s:%d" % (p.alias, port), (p.pod, p.env)
        assert p.env["WARREN_NODE_NAME"] == "warren@" + p.pod


def test_the_rendered_pods_form_one_cluster(rendered, pods):
    c = container(rendered)
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["warren", "ctl"] and probe[-1] == "check_ready", probe
    probe_timeout = c["readinessProbe"]["timeoutSeconds"]
    wanted = {"warren@" + p.pod for p in pods}
    status_cmd = ["warren", "ctl", "--username", USER, "--password", PASSWORD, "--formatter", "json",
                  "cluster_status"]

    began = time.monotonic()
    last = {}
    while True:
        views, ready, limits = {}, {}, {}
        for pod in pods:
            r = docker("exec", pod.name, *status_cmd, timeout=15, check=False)
            try:
                status = json.loads(r.stdout) if r.returncode == 0 else None
            except ValueError:
                status = None
            if status is not None:
                running = {n["name"] for n in status["nodes"] if n.get("running")}
                views[pod.pod] = (status["cluster_name"], running)
                # a node reports its own memory alarm (the others' are not in its view)
                limits[pod.pod] = [n.get("mem_limit") for n in status["nodes"] if n["name"] == "warren@" + pod.pod]
            last[pod.pod] = "cluster_status exit %d: %s%s" % (r.returncode, r.stdout[-600:], r.stderr[-600:])
            # The readiness probe's own command, with the pod's environment (docker exec runs
            # it with the container's env, as the kubelet does).
            r = docker("exec", pod.name, *probe, timeout=probe_timeout + 5, check=False)
            ready[pod.pod] = r.returncode == 0
            last[pod.pod] += "\ncheck_ready exit %d: %s%s" % (r.returncode, r.stdout[-300:], r.stderr[-300:])
        formed = (len(views) == len(pods) and all(running == wanted for _, running in views.values())
                  and len({cluster for cluster, _ in views.values()}) == 1)
        if formed and all(ready.values()):
            break
        if time.monotonic() - began > FORM_WITHIN:
            pytest.fail("the pods did not form one ready cluster of %s within %d s.\nviews: %s\nready: %s\n%s\n%s"
                        % (sorted(wanted), FORM_WITHIN, views, ready,
                           "\n".join("%s: %s" % kv for kv in last.items()),
                           "\n".join(logs(p.name) for p in pods)))
        time.sleep(1)
    took = time.monotonic() - began
    print("%d pods formed one ready cluster %s in %.1f s" % (len(pods), views[pods[0].pod][0], took))

    # The chart writes no memory alarm of its own: each node makes it Warren's default
    # watermark (0.6) of the memory limit it reads from its cgroup (the pod's limit), which is
    # far below this machine's RAM.
    limit = quantity_bytes(c["resources"]["limits"]["memory"])
    assert not [d for d in rendered if d["kind"] == "ConfigMap"], "the defaults render a config file"
    want = int(limit * 0.6)
    assert {pod: seen for pod, seen in limits.items()} == {p.pod: [want] for p in pods}, (
        "the nodes' memory alarms are not 0.6 x %d = %d" % (limit, want))
