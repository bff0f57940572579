//! The management HTTP API client of `warren ctl`: blocking (ureq), basic auth, JSON in and
//! out, RabbitMQ's routes with every path segment percent-encoded (vhost `/` is `%2F`).

use super::CtlError;
use base64::Engine;
use serde_json::Value;
use std::time::Duration;

/// Largest answer read (a definitions export of a big broker).
const MAX_BODY: u64 = 1 << 30;

/// A node's management API.
pub struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

/// `/api/` followed by the segments, each percent-encoded.
pub fn path(segments: &[&str]) -> String {
    let mut p = String::from("/api");
    for s in segments {
        p.push('/');
        p.push_str(&encode(s));
    }
    p
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `host:port` or `http://host:port[/prefix]` as a base URL without a trailing slash.
pub fn base_url(addr: &str) -> Result<String, String> {
    let url = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    if !url.starts_with("http://") {
        return Err(format!("{addr}: only http:// is supported (this build has no TLS)"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Api {
    pub fn new(addr: &str, user: &str, password: &str, timeout: Duration) -> Result<Api, String> {
        let base = base_url(addr)?;
        let config =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(timeout)).proxy(None).build();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Api { agent: config.into(), base, auth: format!("Basic {auth}") })
    }

    /// The base URL (`http://host:port`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; any answer, error statuses included, is `Ok((status, body))` with
    /// the body as JSON (`Null` when empty, a string when it is not JSON).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), CtlError> {
        let url = format!("{}{path}", self.base);
        let auth = self.auth.as_str();
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", auth).call(),
            ("DELETE", Some(b)) => self.agent.delete(&url).header("Authorization", auth).force_send_body().send_json(b),
            ("DELETE", None) => self.agent.delete(&url).header("Authorization", auth).call(),
            ("PUT", Some(b)) => self.agent.put(&url).header("Authorization", auth).send_json(b),
            ("PUT", None) => self.agent.put(&url).header("Authorization", auth).send_empty(),
            (_, Some(b)) => self.agent.post(&url).header("Authorization", auth).send_json(b),
            (_, None) => self.agent.post(&url).header("Authorization", auth).send_empty(),
        };
        let unreachable = |e: ureq::Error| CtlError::Unreachable { url: self.base.clone(), reason: e.to_string() };
        let mut resp = sent.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().with_config().limit(MAX_BODY).read_to_string().map_err(unreachable)?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    /// Like `request`, but an error status becomes `CtlError::Api` with RabbitMQ's reason.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, CtlError> {
        let (status, body) = self.request(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let reason = match &body {
            Value::Object(m) => match m.get("reason").or_else(|| m.get("error")) {
                Some(Value::String(s)) => unescape(s),
                Some(v) => v.to_string(),
                None => body.to_string(),
            },
            Value::String(s) => s.trim().to_owned(),
            Value::Null => format!("HTTP {status}"),
            v => v.to_string(),
        };
        Err(CtlError::Api { status, reason })
    }

    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call("GET", path, None)
    }

    /// GET that answers `None` for 404.
    pub fn get_opt(&self, path: &str) -> Result<Option<Value>, CtlError> {
        match self.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(CtlError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET of a list: an array of objects.
    pub fn list(&self, path: &str) -> Result<Vec<Value>, CtlError> {
        match self.get(path)? {
            Value::Array(rows) => Ok(rows),
            other => Err(bad(path, &format!("expected a JSON array, got {}", kind(&other)))),
        }
    }

    /// GET of one object.
    pub fn object(&self, path: &str) -> Result<serde_json::Map<String, Value>, CtlError> {
        match self.get(path)? {
            Value::Object(m) => Ok(m),
            other => Err(bad(path, &format!("expected a JSON object, got {}", kind(&other)))),
        }
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<(), CtlError> {
        self.call("PUT", path, Some(body)).map(drop)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<(), CtlError> {
        self.call("POST", path, Some(body)).map(drop)
    }

    pub fn delete(&self, path: &str) -> Result<(), CtlError> {
        self.call("DELETE", path, None).map(drop)
    }
}

/// RabbitMQ HTML-escapes its reasons (`[{&lt;&lt;"bogus"&gt;&gt;,1}]`); a terminal wants them plain.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// An answer this tool cannot read.
pub fn bad(path: &str, reason: &str) -> CtlError {
    CtlError::BadResponse { path: path.to_owned(), reason: reason.to_owned() }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(path(&["queues", "/", "a b/c"]), "/api/queues/%2F/a%20b%2Fc");
        assert_eq!(encode("amq.gen-x_~"), "amq.gen-x_~");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn base_urls() {
        assert_eq!(base_url("127.0.0.1:15672").unwrap(), "http://127.0.0.1:15672");
        assert_eq!(base_url("http://h:1/prefix/").unwrap(), "http://h:1/prefix");
        assert!(base_url("https://h:1").is_err());
    }

    #[test]
    fn reasons_are_unescaped() {
        assert_eq!(unescape("[{&lt;&lt;\"x\"&gt;&gt;,1}] &amp;"), "[{<<\"x\">>,1}] &");
    }
}
