"""The Helm chart's values: the Secret's generated passwords are kept across upgrades (Helm's
``lookup``, exercised against a fake API server that answers the few requests
``helm template --dry-run=server`` makes), and bad values are refused by values.schema.json
with a message naming them.

No broker and no Kubernetes cluster are needed; ``helm`` comes from helm_tools.py. Runs in the
single-node pass only, as test_helm_render.py.
"""

import base64
import http.server
import json
import re
import threading

import pytest
import yaml

from helm_tools import CHART, FULLNAME, PYTESTMARK, RELEASE, helm  # noqa: F401 (helm: a fixture)

pytestmark = PYTESTMARK


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
