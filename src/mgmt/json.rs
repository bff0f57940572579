//! JSON in and out: AMQP field tables as the management plugin renders them, and request
//! bodies parsed with RabbitMQ's 400 `not_json` for malformed ones.

use super::ApiError;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde_json::{Map, Value};

/// A request body as JSON (an empty body is `{}`).
pub struct Body(pub Value);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
            _ => ApiError::bad_request("not_json"),
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Value::Object(Map::new())));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(Body(v)),
            _ => Err(ApiError::bad_request("not_json")),
        }
    }
}

impl Body {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A boolean field: absent is `default`, anything but `true`/`false` a 400.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be true or false"))),
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The `arguments` object as a field table.
    pub fn arguments(&self) -> Result<FieldTable, ApiError> {
        match self.get("arguments") {
            None | Some(Value::Null) => Ok(FieldTable::default()),
            Some(Value::Object(m)) => Ok(table_from_json(m)),
            Some(Value::Array(a)) if a.is_empty() => Ok(FieldTable::default()),
            Some(_) => Err(ApiError::bad_request("arguments must be an object")),
        }
    }
}

/// A field value as the management plugin shows it.
pub fn value(v: &AMQPValue) -> Value {
    use AMQPValue::*;
    match v {
        Boolean(b) => Value::from(*b),
        ShortShortInt(n) => Value::from(*n),
        ShortShortUInt(n) => Value::from(*n),
        ShortInt(n) => Value::from(*n),
        ShortUInt(n) => Value::from(*n),
        LongInt(n) => Value::from(*n),
        LongUInt(n) => Value::from(*n),
        LongLongInt(n) => Value::from(*n),
        Timestamp(n) => Value::from(*n),
        Float(f) => Value::from(*f),
        Double(f) => Value::from(*f),
        DecimalValue(d) => Value::from(d.value as f64 / 10f64.powi(i32::from(d.scale))),
        ShortString(s) => Value::from(s.as_str()),
        LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ByteArray(b) => Value::from(String::from_utf8_lossy(b.as_slice()).into_owned()),
        FieldArray(a) => Value::Array(a.as_slice().iter().map(value).collect()),
        FieldTable(t) => table(t),
        Void => Value::Null,
    }
}

/// A field table as a JSON object.
pub fn table(t: &FieldTable) -> Value {
    Value::Object(t.inner().iter().map(|(k, v)| (k.as_str().to_owned(), value(v))).collect())
}

/// A JSON value as the field value RabbitMQ makes of it (integers become `long`, strings
/// `longstr`).
pub fn from_json(v: &Value) -> AMQPValue {
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(a.iter().map(from_json).collect::<Vec<_>>())),
        Value::Object(m) => AMQPValue::FieldTable(table_from_json(m)),
    }
}

pub fn table_from_json(m: &Map<String, Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in m {
        t.insert(k.as_str().into(), from_json(v));
    }
    t
}
