//! A published message as it travels from a publisher's socket to a consumer's.

use amq_protocol::frame::{AMQPContentHeader, WriteContext};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;

/// Encodes a content-header payload (class, weight, body size, properties) for properties the
/// broker rewrote.
pub fn encode_header(body_size: u64, props: &BasicProperties) -> Bytes {
    let frame = amq_protocol::frame::AMQPFrame::Header(
        0,
        AMQPContentHeader { class_id: 60, body_size, properties: props.clone() },
    );
    match amq_protocol::frame::gen_frame(&frame)(WriteContext::from(Vec::with_capacity(128))) {
        // Strip the 7-byte frame header and the frame-end octet.
        Ok(ctx) if ctx.write.len() > 8 => Bytes::copy_from_slice(&ctx.write[7..ctx.write.len() - 1]),
        _ => Bytes::new(),
    }
}

/// An immutable message, shared (behind `Arc`) by every queue it was routed to.
///
/// The body is the `Bytes` cut from the publisher's read buffer and written to consumers'
/// sockets as is: it is never copied on the way through.
#[derive(Debug)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    /// The encoded content-header payload (class, weight, body size, properties), forwarded to
    /// consumers unchanged when the properties were not rewritten.
    pub header: Bytes,
    pub body: Body,
}

impl Message {
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The routing keys it was published with: its routing key, then its `CC` header's keys
    /// (what `x-death` and firehose traces record).
    pub fn routing_keys(&self) -> Vec<String> {
        let mut keys = vec![self.routing_key.clone()];
        let cc = self.properties.headers().as_ref().and_then(|h| h.inner().get("CC"));
        if let Some(amq_protocol::types::AMQPValue::FieldArray(cc)) = cc {
            keys.extend(cc.as_slice().iter().filter_map(crate::broker::argument::as_str));
        }
        keys
    }

    /// The same message with the `x-delivery-count` header a quorum queue adds to a
    /// redelivery (RabbitMQ 4): how many times it came back before.
    pub fn with_delivery_count(&self, count: u16) -> Message {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(i64::from(count)));
        self.with_headers(headers)
    }

    /// The same message (body shared, not copied) with other headers.
    pub fn with_headers(&self, headers: FieldTable) -> Message {
        let properties = self.properties.clone().with_headers(headers);
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            header: encode_header(self.body_len() as u64, &properties),
            properties,
            body: self.body.clone(),
        }
    }
}

/// A message body as the body frames that carried it: slices of the publisher's read buffer,
/// kept as they are (a body spread over several frames is never joined into one copy).
#[derive(Clone, Debug, Default)]
pub struct Body {
    parts: Vec<Bytes>,
    len: usize,
}

impl Body {
    pub fn from_parts(parts: Vec<Bytes>) -> Self {
        let len = parts.iter().map(Bytes::len).sum();
        Self { parts: parts.into_iter().filter(|p| !p.is_empty()).collect(), len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The frames' slices, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body in pieces of at most `max` bytes, each a slice of the original parts.
    pub fn chunks(&self, max: usize) -> impl Iterator<Item = Bytes> + '_ {
        self.parts
            .iter()
            .flat_map(move |p| (0..p.len()).step_by(max.max(1)).map(move |off| p.slice(off..(off + max).min(p.len()))))
    }

    /// A contiguous copy, for callers that need one (tests, management previews).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for p in &self.parts {
            v.extend_from_slice(p);
        }
        v
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Self::from_parts(vec![b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_slice_without_joining() {
        let a = Bytes::from_static(b"abcde");
        let b = Body::from_parts(vec![a.clone(), Bytes::new(), Bytes::from_static(b"fg")]);
        assert_eq!(b.len(), 7);
        let chunks: Vec<Bytes> = b.chunks(2).collect();
        assert_eq!(chunks, vec![&b"ab"[..], &b"cd"[..], &b"e"[..], &b"fg"[..]]);
        // The first chunk points into the original buffer: no copy.
        assert_eq!(chunks[0].as_ptr(), a.as_ptr());
        assert_eq!(b.to_vec(), b"abcdefg");
    }
}
