"""The Helm chart in helm/warren, rendered: ``helm lint --strict``, every option set rendered and
validated against Kubernetes' schemas, and what the rendered objects say (the StatefulSet, its
probes, security context and peer list, the Services, PDB, Secret references, config file and
notes).

No broker and no Kubernetes cluster are needed; ``helm`` and the validation come from
helm_tools.py. The suite runs once against a single node and once against a cluster
(``WARREN_CLUSTER``); these tests need neither and run in the single-node pass only.
"""

import base64
import json
import tomllib

import pytest

import kubernetes_validate
from helm_tools import (CHART, FULLNAME, HEADLESS, K8S_VERSIONS, PYTESTMARK, RELEASE, container,
                        env_of, env_value, helm, kinds, one, peers, validate_all,  # noqa: F401 (helm: a fixture)
                        validate_servicemonitor)

pytestmark = PYTESTMARK


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
    assert toml["memory_high_watermark_bytes"] == 123456789
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


def _check_no_config_file(docs):
    """No config given: no ConfigMap, file, mount or checksum (Warren's defaults)."""
    assert not [d for d in docs if d["kind"] == "ConfigMap"], kinds(docs)
    assert "WARREN_CONFIG" not in dict(env_of(docs))
    pod = one(docs, "StatefulSet")["spec"]["template"]
    assert "checksum/config" not in pod["metadata"]["annotations"]
    assert not [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    assert not [m for m in container(docs)["volumeMounts"] if m["name"] == "config"]


def _check_resources(docs):
    c = container(docs)
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    # Warren reads the limit from its cgroup: the chart writes no memory alarm of its own.
    _check_no_config_file(docs)


def _check_no_limits(docs):
    assert "limits" not in container(docs)["resources"]
    _check_no_config_file(docs)


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
    assert pod["enableServiceLinks"] is False
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


def test_no_config_file_by_default(defaults):
    """With the defaults (a memory limit included) there is no file: Warren reads the limit
    from its cgroup and applies its default watermark to it."""
    assert container(defaults)["resources"]["limits"]["memory"] == "1Gi"
    _check_no_config_file(defaults)


def test_config_file_is_what_was_given(helm):
    """Only the keys given, in a file mounted where WARREN_CONFIG says."""
    # --set gives "0.25" as a string: still a float in the file; the limit adds nothing
    docs = helm.template("--set", "config.memory_high_watermark=0.25", "--set", "resources.limits.memory=2G")
    cm = one(docs, "ConfigMap", FULLNAME + "-config")
    toml = tomllib.loads(cm["data"]["warren.toml"])
    assert toml == {"memory_high_watermark": 0.25}
    pod = one(docs, "StatefulSet")["spec"]["template"]
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "config"]
    assert mount["readOnly"] is True
    assert env_value(docs, "WARREN_CONFIG") == mount["mountPath"] + "/warren.toml"
    assert pod["metadata"]["annotations"]["checksum/config"]
    # 1 is a float key's value: written 1.0, which Warren's f64 field reads
    docs = helm.template("--set", "config.memory_high_watermark=1")
    text = one(docs, "ConfigMap")["data"]["warren.toml"]
    assert "memory_high_watermark = 1.0" in text.splitlines(), text


def test_config_change_rolls_the_pods(helm):
    def checksum(docs):
        return one(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    first = helm.template("--set", "config.heartbeat=30")
    same = helm.template("--set", "config.heartbeat=30")
    changed = helm.template("--set", "config.heartbeat=60")
    assert checksum(same) == checksum(first)
    assert checksum(changed) != checksum(first)


def test_notes_say_how_to_connect(helm):
    r = helm.run("install", RELEASE, CHART, "--dry-run=client", "--namespace", "prod")
    assert r.returncode == 0, r.stderr
    notes = r.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n prod port-forward svc/%s 5672:5672 15672:15672" % FULLNAME in notes
    assert "get secret %s -o jsonpath='{.data.default-pass}' | base64 -d" % FULLNAME in notes
    assert "http://127.0.0.1:15672/" in notes
    assert "%s.prod.svc.cluster.local:5672" % FULLNAME in notes


