"""Headless-browser test of the management web UI (src/mgmt/ui/).

Against RabbitMQ (``AMQP_URL``): the test serves the three UI files from a
small HTTP server inside the test process and proxies every ``/api/...``
request to ``MGMT_URL`` (default http://127.0.0.1:15673), so the UI runs
against a real RabbitMQ management API.  Against Warren the UI is loaded from
Warren's own HTTP port (it serves ``/``, ``/app.js``, ``/app.css``).

Needs chromium + chromedriver (Debian: ``apt install chromium chromium-driver``)
and selenium (requirements.txt); skipped when they are missing.
``WARREN_UI_SHOTS=/some/dir`` saves a screenshot of every page visited.
"""

import base64
import http.client
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
import pytest

pytestmark = pytest.mark.mgmt

UI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "mgmt", "ui")
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length",
              "accept-encoding"}
WAIT = 15  # seconds; RabbitMQ refreshes queue stats every 5 s and the UI every 5 s


# --------------------------------------------------------------------------
# asset server + /api proxy (RabbitMQ only)

def _make_handler(upstream):
    target = urllib.parse.urlsplit(upstream)
    prefix = target.path.rstrip("/")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status, headers, body):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self):
            path = self.path.split("?", 1)[0]
            if path.startswith("/api/"):
                return self._proxy()
            asset = ASSETS.get(path)
            if asset is None or self.command not in ("GET", "HEAD"):
                return self._send(404, [("Content-Type", "text/plain")], b"not found")
            with open(os.path.join(UI_DIR, asset[0]), "rb") as f:
                body = f.read()
            self._send(200, [("Content-Type", asset[1]), ("Cache-Control", "no-store")], body)

        def _proxy(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
            try:
                conn.request(self.command, prefix + self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                out = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP_BY_HOP]
                self._send(r.status, out, data)
            finally:
                conn.close()

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


@pytest.fixture(scope="module")
def ui_url(broker):
    if broker.is_warren:
        port = getattr(broker, "http_port", None)
        url = "http://127.0.0.1:%d" % port if port else os.environ.get("MGMT_URL")
        if not url:
            pytest.skip("Warren's HTTP address is unknown: set MGMT_URL")
        yield url.rstrip("/") + "/"
        return
    upstream = os.environ.get("MGMT_URL", "http://127.0.0.1:15673")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(upstream))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/" % server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def api(ui_url, method, path, body=None, user="guest", password="guest"):
    """Management API call through the same origin the UI uses; returns (status, json)."""
    req = urllib.request.Request(
        ui_url.rstrip("/") + "/api" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(
            ("%s:%s" % (user, password)).encode()).decode(), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, data = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    return status, (json.loads(data) if data else None)


# --------------------------------------------------------------------------
# browser

def _find_browser():
    for name in ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    return None


def _find_driver():
    for name in ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver"):
        path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    browser, chromedriver = _find_browser(), _find_driver()
    if browser is None:
        pytest.skip("chromium is not installed (apt install chromium)")
    if chromedriver is None:
        pytest.skip("chromedriver is not installed (apt install chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    # The console is kept, so the last test can look for anything the CSP refused.
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    d.set_page_load_timeout(20)
    yield d
    d.quit()


def by_css(sel):
    from selenium.webdriver.common.by import By
    return (By.CSS_SELECTOR, sel)


def wait(d, pred, what, timeout=WAIT):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(drv):
        try:
            return pred(drv)
        except StaleElementReferenceException:  # a 5 s refresh replaced the table
            return False
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.2).until(safe)
    except TimeoutException:
        shot(d, "FAILED")
        raise AssertionError("timed out after %s s waiting for %s" % (timeout, what))


def text_of(d, sel):
    els = d.find_elements(*by_css(sel))
    return els[0].text if els else None


def shot(d, name):
    folder = os.environ.get("WARREN_UI_SHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        d.save_screenshot(os.path.join(folder, name + ".png"))


def go(d, ui_url, route):
    d.get(ui_url + "#" + route)


def login(d, ui_url, user="guest", password="guest"):
    d.get(ui_url + "#/login")
    d.execute_script("sessionStorage.clear()")
    d.get(ui_url + "#/login")
    wait(d, lambda x: x.find_elements(*by_css("#login-username")), "the login form")
    u = d.find_element(*by_css("#login-username"))
    u.clear()
    u.send_keys(user)
    d.find_element(*by_css("#login-password")).send_keys(password)
    d.find_element(*by_css("#login-submit")).click()


def queue_row(d, vhost, name):
    for row in d.find_elements(*by_css("#queues-table tbody tr")):
        if row.get_attribute("data-name") == name and row.get_attribute("data-vhost") == vhost:
            return row
    return None


def cell(row, col):
    return row.find_element(*by_css('td[data-col="%s"]' % col)).text


def passive_count(broker, queue):
    c = broker.connect()
    try:
        return c.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        c.close()


def wait_count(broker, queue, n, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        got = passive_count(broker, queue)
        if got == n or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@pytest.fixture
def logged_in(driver, ui_url):
    login(driver, ui_url)
    wait(driver, lambda d: (text_of(d, "#overview-node") or "").strip(), "the overview node name")
    return driver


@pytest.fixture
def queue(broker):
    """A fresh queue on the broker's vhost, deleted at the end."""
    name = "ui-test-%s" % uuid.uuid4().hex[:10]
    c = broker.connect()
    c.channel().queue_declare(name)
    c.close()
    yield name
    c = broker.connect()
    try:
        c.channel().queue_delete(name)
    finally:
        c.close()


# --------------------------------------------------------------------------
# tests

def test_login_and_overview(logged_in, ui_url):
    d = logged_in
    status, overview = api(ui_url, "GET", "/overview")
    assert status == 200
    assert text_of(d, "#overview-node") == overview["node"]
    for k in ("connections", "channels", "exchanges", "queues", "consumers"):
        assert text_of(d, "#total-" + k).isdigit(), k
    for k in ("ready", "unacked", "total"):
        assert text_of(d, "#queued-" + k).isdigit(), k
    for k in ("publish", "deliver", "ack"):
        assert text_of(d, "#rate-" + k).endswith("/s"), k
    assert text_of(d, "#whoami") == "guest"
    # The last ten minutes as charts (drawn from what the page sampled; one sample so far),
    # their legends with the latest values.
    for chart in ("#chart-queued", "#chart-rates"):
        assert d.find_elements(*by_css(chart)), chart
    assert "Ready" in d.page_source and "Deliver / get" in d.page_source
    shot(d, "overview")


def test_queue_list_purge_publish_get(logged_in, ui_url, broker, queue):
    d = logged_in
    vhost = broker.vhost
    c = broker.connect()
    ch = c.channel()
    for i in range(3):
        ch.basic_publish("", queue, b"msg-%d" % i)
    c.close()
    assert wait_count(broker, queue, 3) == 3

    # the queues page lists it with 3 messages (stats lag up to ~10 s on RabbitMQ)
    go(d, ui_url, "/queues")
    def row_with_3(x):
        r = queue_row(x, vhost, queue)
        return r if r is not None and cell(r, "messages") == "3" else None
    row = wait(d, row_with_3, "queue %s with 3 messages in the queues table" % queue)
    assert cell(row, "ready") == "3"
    assert cell(row, "vhost") == vhost
    shot(d, "queues")

    # open the queue page, purge (accepting the confirm dialog)
    row.find_element(*by_css('td[data-col="name"] a')).click()
    wait(d, lambda x: text_of(x, "#queue-name") == queue, "the queue page")
    wait(d, lambda x: x.find_elements(*by_css("#queue-bindings-table")), "the queue bindings table")
    shot(d, "queue")
    d.find_element(*by_css("#queue-purge")).click()
    wait(d, lambda x: x.switch_to.alert, "the purge confirm dialog", timeout=5).accept()
    assert wait_count(broker, queue, 0) == 0
    status, q = api(ui_url, "GET", "/queues/%s/%s" % (urllib.parse.quote(vhost, safe=""), queue))
    assert status == 200 and q["name"] == queue

    # publish through the UI form, then get it back through the UI's Get form
    payload = "hello from the UI <b>%s</b> & co" % uuid.uuid4().hex[:6]
    d.find_element(*by_css("#publish-payload")).send_keys(payload)
    d.find_element(*by_css("#publish-submit")).click()
    wait(d, lambda x: text_of(x, "#publish-result") == "Message published.", "the publish result")
    assert wait_count(broker, queue, 1) == 1

    from selenium.webdriver.support.ui import Select
    Select(d.find_element(*by_css("#get-ackmode"))).select_by_value("ack_requeue_false")
    d.find_element(*by_css("#get-submit")).click()
    shown = wait(d, lambda x: x.find_elements(*by_css('#get-results [data-testid="get-payload"]')),
                 "the fetched message")
    assert [e.text for e in shown] == [payload]  # rendered as text, not HTML
    assert wait_count(broker, queue, 0) == 0  # ack_requeue_false removed it
    shot(d, "queue-get")


def test_a_quorum_queue_shows_its_leader_and_members(logged_in, ui_url, broker):
    """The queues table shows a quorum queue's leader with "+N" for its other members online
    (RabbitMQ's UI does the same); its page lists leader, members and online members."""
    d = logged_in
    name = "ui-quorum-%s" % uuid.uuid4().hex[:10]
    c = broker.connect()
    c.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    c.close()
    try:
        status, q = api(ui_url, "GET", "/queues/%s/%s" % (urllib.parse.quote(broker.vhost, safe=""), name))
        assert status == 200, q
        members = q.get("members") or [q["node"]]
        go(d, ui_url, "/queues")
        wait(d, lambda x: queue_row(x, broker.vhost, name) is not None, "the quorum queue's row")
        node = cell(queue_row(d, broker.vhost, name), "node")
        leader = q.get("leader") or q["node"]
        want = leader + (" +%d" % (len(members) - 1) if len(members) > 1 else "")
        assert node == want, (node, q)
        if q.get("members"):
            go(d, ui_url, "/queues/%s/%s" % (urllib.parse.quote(broker.vhost, safe=""), name))
            wait(d, lambda x: (text_of(x, "#queue-members") or "") != "", "the members row")
            assert sorted(text_of(d, "#queue-members").split(", ")) == sorted(q["members"])
            assert text_of(d, "#queue-leader") == q["leader"]
            assert d.find_elements(*by_css("#queue-chart-queued")) and d.find_elements(*by_css("#queue-chart-rates"))
    finally:
        c = broker.connect()
        try:
            c.channel().queue_delete(name)
        finally:
            c.close()


def test_escapes_names(logged_in, ui_url, broker):
    """A queue name full of markup shows up verbatim in the table."""
    d = logged_in
    name = "ui-<img src=x onerror=alert(1)>-%s" % uuid.uuid4().hex[:6]
    c = broker.connect()
    c.channel().queue_declare(name)
    try:
        go(d, ui_url, "/queues")
        row = wait(d, lambda x: queue_row(x, broker.vhost, name), "the markup-named queue row")
        assert cell(row, "name") == name
        assert not d.find_elements(*by_css("#queues-table img"))
    finally:
        c.channel().queue_delete(name)
        c.close()


def test_other_pages_render(logged_in, ui_url):
    d = logged_in
    for route, sel in (("/exchanges", '#exchanges-table tr[data-name="amq.direct"]'),
                       ("/connections", "#connections-table, [data-testid=connections-table-empty]"),
                       ("/admin", '#users-table tr[data-name="guest"]'),
                       ("/trace", "#trace-status")):
        go(d, ui_url, route)
        wait(d, lambda x: x.find_elements(*by_css(sel)), "%s on %s" % (sel, route))
        if route == "/trace":
            wait(d, lambda x: "Tracing is" in (text_of(x, "#trace-status") or ""), "the tracing state")
        shot(d, route.strip("/"))
    go(d, ui_url, "/exchanges/%2F/amq.topic")
    wait(d, lambda x: text_of(x, "#exchange-type-value") == "topic", "the amq.topic exchange page")
    shot(d, "exchange")


def test_close_connection(logged_in, ui_url, broker):
    d = logged_in
    label = "ui-conn-%s" % uuid.uuid4().hex[:8]
    c = broker.connect(client_properties={"connection_name": label})
    try:
        go(d, ui_url, "/connections")

        def row(x):
            for r in x.find_elements(*by_css("#connections-table tbody tr")):
                if cell(r, "client-name") == label:
                    return r
            return None
        r = wait(d, row, "connection %s in the connections table" % label)
        assert cell(r, "user") == broker.user
        r.find_element(*by_css('[data-testid="connection-close"]')).click()
        wait(d, lambda x: x.switch_to.alert, "the close confirm dialog", timeout=5).accept()
        deadline = time.monotonic() + 10
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
            while time.monotonic() < deadline:
                c.process_data_events(time_limit=0.2)
    finally:
        if c.is_open:
            c.close()


def test_trace_viewer(logged_in, ui_url, broker):
    """Enable tracing and create the trace queue from the UI, then see a publish and a delivery."""
    from selenium.webdriver.support.ui import Select
    d = logged_in
    vhost = "warren-ui-trace-%s" % uuid.uuid4().hex[:8]
    ev = urllib.parse.quote(vhost, safe="")
    assert api(ui_url, "PUT", "/vhosts/" + ev, {"description": "UI trace test"})[0] in (201, 204)
    try:
        assert api(ui_url, "PUT", "/permissions/%s/guest" % ev,
                   {"configure": ".*", "write": ".*", "read": ".*"})[0] in (201, 204)
        go(d, ui_url, "/trace")
        wait(d, lambda x: x.find_elements(*by_css('#trace-vhost option[value="%s"]' % vhost)),
             "the new vhost in the trace vhost list")
        Select(d.find_element(*by_css("#trace-vhost"))).select_by_value(vhost)
        wait(d, lambda x: text_of(x, "#trace-status") == "Tracing is off for virtual host %s." % vhost,
             "tracing off")
        d.find_element(*by_css("#trace-start")).click()
        wait(d, lambda x: "ON" in text_of(x, "#trace-status"), "tracing on")
        assert api(ui_url, "GET", "/vhosts/" + ev)[1]["tracing"] is True
        assert api(ui_url, "GET", "/vhosts/" + ev)[1]["description"] == "UI trace test"
        d.find_element(*by_css("#trace-create")).click()

        def bound(_):
            st, binds = api(ui_url, "GET", "/exchanges/%s/amq.rabbitmq.trace/bindings/source" % ev)
            return st == 200 and any(b["destination"] == "warren.trace.ui" and b["routing_key"] == "#"
                                     for b in binds)
        wait(d, bound, "warren.trace.ui bound to amq.rabbitmq.trace", timeout=5)
        st, tq = api(ui_url, "GET", "/queues/%s/warren.trace.ui" % ev)
        assert st == 200 and tq["arguments"].get("x-max-length") == 1000

        c = broker.connect(virtual_host=vhost)
        ch = c.channel()
        ch.queue_declare("traced-q")
        ch.basic_publish("", "traced-q", b"traced payload")
        m = None
        for _ in range(50):
            m, _props, _body = ch.basic_get("traced-q", auto_ack=True)
            if m is not None:
                break
            time.sleep(0.1)
        c.close()
        assert m is not None

        d.find_element(*by_css("#trace-poll")).click()

        def trace_rows(x):
            rows = {}
            for r in x.find_elements(*by_css("#trace-table tbody tr")):
                rows[cell(r, "routing_key")] = (cell(r, "exchange_name"), cell(r, "routing_keys"),
                                                cell(r, "payload"))
            return rows if {"publish.", "deliver.traced-q"} <= set(rows) else None
        rows = wait(d, trace_rows, "publish. and deliver.traced-q trace rows")
        assert rows["publish."] == ("(AMQP default)", "traced-q", "traced payload")
        assert rows["deliver.traced-q"][2] == "traced payload"
        shot(d, "trace-messages")
        d.find_element(*by_css("#trace-poll")).click()  # stop polling
    finally:
        api(ui_url, "DELETE", "/vhosts/" + ev)


def test_wrong_password_shows_error(driver, ui_url):
    login(driver, ui_url, "guest", "definitely-wrong")
    wait(driver, lambda d: d.find_element(*by_css("#login-error")).is_displayed(), "the login error")
    assert "Login failed" in text_of(driver, "#login-error")
    assert driver.execute_script("return sessionStorage.getItem('warren.auth')") is None
    shot(driver, "login-error")


def test_the_content_security_policy_refuses_nothing_the_ui_does(driver, ui_url):
    # Last in the file: the console holds what every page visited above did. The API sends
    # a strict policy (no inline script or style, nothing from elsewhere); a UI that broke
    # it would show here as "Refused to ..." messages.
    login(driver, ui_url)
    for route in ("/", "/queues", "/connections"):
        go(driver, ui_url, route)
        time.sleep(0.3)
    refused = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert not refused, refused
