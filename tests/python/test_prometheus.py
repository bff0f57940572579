"""Prometheus text endpoint (rabbitmq_prometheus compatible, aggregated /metrics).

The families asserted are the ones the official Grafana "RabbitMQ-Overview"
dashboard queries.  Note: ``prometheus_client``'s parser names a counter
family without its ``_total`` suffix (family ``rabbitmq_global_messages_received``
holds the sample ``rabbitmq_global_messages_received_total``), so names are
looked up among both family and sample names.
"""
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import uniq, wait_for, get_message

pytestmark = pytest.mark.mgmt

DASHBOARD_FAMILIES = [
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_connections",
    "rabbitmq_channels",
    "rabbitmq_queues",
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_identity_info",
    "rabbitmq_build_info",
    "rabbitmq_process_resident_memory_bytes",
    "rabbitmq_resident_memory_limit_bytes",
    "rabbitmq_disk_space_available_bytes",
]

# counters are live in RabbitMQ; queue gauges follow the 5 s stats round
BOUND = 20.0


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    assert ctype.startswith("text/plain"), ctype
    return list(text_string_to_metric_families(text))


def samples(families):
    """{sample name: [Sample, ...]} over all families."""
    out = {}
    for f in families:
        for s in f.samples:
            out.setdefault(s.name, []).append(s)
    return out


def total(url, name):
    """Sum of all samples called name (over labels, e.g. protocol)."""
    got = samples(scrape(url)).get(name)
    assert got, "no samples named %s" % name
    return sum(s.value for s in got)


def test_dashboard_families_present(metrics_url):
    fams = scrape(metrics_url)
    names = {f.name for f in fams} | set(samples(fams))
    missing = [n for n in DASHBOARD_FAMILIES if n not in names]
    assert not missing, missing
    by_sample = samples(fams)
    for n in DASHBOARD_FAMILIES:
        assert by_sample.get(n), "family %s has no sample" % n
    types = {f.name: f.type for f in fams}
    assert types["rabbitmq_global_messages_received"] == "counter"
    assert types["rabbitmq_queue_messages_ready"] == "gauge"
    assert types["rabbitmq_connections"] == "gauge"


def test_identity_and_build_info(metrics_url, mgmt):
    by_sample = samples(scrape(metrics_url))
    s, o = mgmt.get("/api/overview")
    [ident] = by_sample["rabbitmq_identity_info"]
    assert ident.value == 1
    assert ident.labels["rabbitmq_node"] == o["node"]
    assert ident.labels["rabbitmq_cluster"] == o["cluster_name"]
    [build] = by_sample["rabbitmq_build_info"]
    assert build.value == 1
    assert build.labels["rabbitmq_version"] == o["rabbitmq_version"]
    assert by_sample["rabbitmq_process_resident_memory_bytes"][0].value > 0
    assert by_sample["rabbitmq_resident_memory_limit_bytes"][0].value > 0
    assert by_sample["rabbitmq_disk_space_available_bytes"][0].value > 0


def test_global_counters_rise(metrics_url, connect):
    names = ["rabbitmq_global_messages_%s_total" % k
             for k in ("received", "confirmed", "delivered", "acknowledged")]
    before = {n: total(metrics_url, n) for n in names}
    # Counters and gauges are the scraped node's own (as RabbitMQ's per-node endpoint): in a
    # cluster (WARREN_CLUSTER) the connection goes to node 1, whose /metrics metrics_url is.
    conn = connect(node=0)
    ch = conn.channel()
    ch.confirm_delivery()
    queue = ch.queue_declare(uniq("prom"), exclusive=True).method.queue
    for i in range(3):
        ch.basic_publish("", queue, b"p%d" % i)   # confirmed (confirm_delivery waits)
    for i in range(3):
        m, _, _ = get_message(ch, queue, auto_ack=False)
        ch.basic_ack(m.delivery_tag)

    def risen():
        now = {n: total(metrics_url, n) for n in names}
        return all(now[n] >= before[n] + 3 for n in names) and now

    now = wait_for(risen, timeout=BOUND, interval=0.5)
    assert now, {n: (before[n], total(metrics_url, n)) for n in names}


def test_queue_and_connection_gauges(metrics_url, connect):
    conn = connect(node=0)  # node 1's own connection and channel (see test_global_counters_rise)
    ch = conn.channel()
    queue = ch.queue_declare(uniq("prom"), exclusive=True).method.queue
    for i in range(4):
        ch.basic_publish("", queue, b"g%d" % i)
    get_message(ch, queue, auto_ack=False)   # 3 ready, 1 unacked

    def seen():
        s = samples(scrape(metrics_url))
        v = {n: sum(x.value for x in s[n]) for n in
             ("rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
              "rabbitmq_queues", "rabbitmq_connections", "rabbitmq_channels")}
        ok = (v["rabbitmq_queue_messages_ready"] >= 3 and v["rabbitmq_queue_messages_unacked"] >= 1
              and v["rabbitmq_queues"] >= 1 and v["rabbitmq_connections"] >= 1
              and v["rabbitmq_channels"] >= 1)
        return ok and v

    v = wait_for(seen, timeout=BOUND, interval=0.5)
    assert v, samples(scrape(metrics_url)).get("rabbitmq_queue_messages_ready")
