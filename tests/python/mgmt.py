"""Tiny client for the RabbitMQ-compatible management HTTP API (stdlib only).

    api = Mgmt("http://127.0.0.1:15672", "guest", "guest")
    status, body = api.get("/api/queues/%s/%s" % (vq("/"), q("my-queue")))
    status, body = api.put(api.path("queues", "/", "my-queue"), {"durable": True})

``get/put/post/delete`` return ``(status, body)`` where ``body`` is the
decoded JSON, or the text when the response is not JSON (or ``None`` when
empty).  ``request`` returns a ``Reply`` that also carries the response
headers (e.g. ``Location`` of ``POST /api/bindings/...``).  HTTP errors are
returned, never raised; only a transport failure raises.

``user``/``password`` keyword arguments override the credentials per call;
``auth=False`` sends no ``Authorization`` header.  ``raw=b"..."`` sends a
body verbatim (for malformed-JSON tests).
"""

import base64
import collections
import json
import urllib.error
import urllib.parse
import urllib.request

Reply = collections.namedtuple("Reply", "status body headers")


def q(segment):
    """Percent-encode one path segment ('/' -> '%2F', ' ' -> '%20')."""
    return urllib.parse.quote(str(segment), safe="")


vq = q  # vhost: "/" -> "%2F"


class Mgmt:
    def __init__(self, base_url, user="guest", password="guest", timeout=10.0):
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.password = password
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(self.base_url)
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)

    def __repr__(self):
        return "Mgmt(%r)" % self.base_url

    @staticmethod
    def path(*segments, query=None):
        """path("queues", "/", "q1") -> "/api/queues/%2F/q1" (each segment quoted)."""
        p = "/api/" + "/".join(q(s) for s in segments)
        if query:
            p += "?" + urllib.parse.urlencode(query)
        return p

    def request(self, method, path, body=None, raw=None, user=None, password=None,
                auth=True, headers=None, timeout=None):
        url = path if path.startswith("http") else self.base_url + path
        data = None
        # no Accept header: RabbitMQ answers 406 to "Accept: application/json"
        # on DELETE /api/queues/{v}/{q}/contents (purge)
        hdrs = {}
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif method in ("PUT", "POST"):
            data = b""
        if auth:
            cred = "%s:%s" % (self.user if user is None else user,
                              self.password if password is None else password)
            hdrs["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        hdrs.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout or self.timeout)
            status, text, rh = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, text, rh = e.code, e.read(), e.headers
        return Reply(status, _decode(text, rh), rh)

    def get(self, path, **kw):
        r = self.request("GET", path, **kw)
        return r.status, r.body

    def put(self, path, body=None, **kw):
        r = self.request("PUT", path, body, **kw)
        return r.status, r.body

    def post(self, path, body=None, **kw):
        r = self.request("POST", path, body, **kw)
        return r.status, r.body

    def delete(self, path, **kw):
        r = self.request("DELETE", path, **kw)
        return r.status, r.body

    def ok(self, method, path, body=None, expect=(200, 201, 204), **kw):
        """Like request() but asserts a success status; returns the body."""
        r = self.request(method, path, body, **kw)
        assert r.status in expect, "%s %s -> %s %r" % (method, path, r.status, r.body)
        return r.body


def _decode(raw, headers):
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    ctype = (headers.get("Content-Type") or "") if headers is not None else ""
    if "json" in ctype or text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text
