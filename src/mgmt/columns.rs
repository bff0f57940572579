//! `?columns=a,b.c`: RabbitMQ's API answers with only those fields of each object (tools such
//! as `rabbitmqadmin list … <columns>` rely on it). Applied to every JSON answer.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Largest JSON answer filtered; larger ones pass unfiltered.
const MAX: usize = 64 << 20;

pub async fn select(req: Request, next: Next) -> Response {
    let columns = req.uri().query().and_then(columns_of);
    let resp = next.run(req).await;
    let Some(columns) = columns else { return resp };
    if !resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX).await else {
        return (parts.status, "answer too large to filter").into_response();
    };
    let filtered = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(items)) => Value::Array(items.iter().map(|v| pick(v, &columns)).collect()),
        Ok(v @ Value::Object(_)) => pick(&v, &columns),
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(filtered.to_string()))
}

fn columns_of(query: &str) -> Option<Vec<String>> {
    let raw = query.split('&').find_map(|kv| kv.strip_prefix("columns="))?;
    let decoded = percent_decode(raw);
    Some(decoded.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The object with only the given (possibly dotted) fields.
fn pick(v: &Value, columns: &[String]) -> Value {
    if !v.is_object() {
        return v.clone();
    }
    let mut out = Map::new();
    for c in columns {
        let path: Vec<&str> = c.split('.').collect();
        let mut cur = Some(v);
        for p in &path {
            cur = cur.and_then(|x| x.get(*p));
        }
        let Some(found) = cur else { continue };
        insert(&mut out, &path, found.clone());
    }
    Value::Object(out)
}

/// Puts `value` at `path` in `out`, creating the objects on the way.
fn insert(out: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            out.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            if let Value::Object(m) = out.entry((*first).to_owned()).or_insert_with(|| Value::Object(Map::new())) {
                insert(m, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn picks_plain_and_dotted_columns() {
        let v = json!({ "name": "q", "messages": 3, "message_stats": { "publish": 5, "ack": 1 } });
        let cols = columns_of("columns=name%2Cmessage_stats.publish&x=1").unwrap();
        assert_eq!(pick(&v, &cols), json!({ "name": "q", "message_stats": { "publish": 5 } }));
        assert_eq!(columns_of("page=1"), None);
        assert_eq!(percent_decode("a%2Fb+c%"), "a/b c%");
    }
}
