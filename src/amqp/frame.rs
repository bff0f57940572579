//! Frame boundaries (AMQP 0-9-1 §4.2.3): `type:u8 channel:u16 size:u32 payload frame-end`.
//!
//! Frames are cut out of the read buffer as `Bytes` without copying; the size is checked
//! against the negotiated `frame_max` before the payload is buffered. Method and content
//! header payloads are decoded by `amq-protocol`.

use super::error::AmqpError;
use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::protocol::{AMQPClass, parse_class};
use bytes::{Buf, Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Bytes of framing around a payload.
pub const FRAME_OVERHEAD: usize = 8;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One frame as read off the wire.
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// Formats bytes as Erlang prints a binary (`<<"text">>` or `<<1,2,3>>`), as RabbitMQ's frame
/// error texts do; at most 16 bytes are shown.
pub fn erlang_binary(bytes: &[u8]) -> String {
    let b = &bytes[..bytes.len().min(16)];
    if !b.is_empty() && b.iter().all(|c| (0x20..0x7f).contains(c)) {
        let mut s = String::from("<<\"");
        for &c in b {
            if c == b'"' || c == b'\\' {
                s.push('\\');
            }
            s.push(c as char);
        }
        s + "\">>"
    } else {
        format!("<<{}>>", b.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
    }
}

/// RabbitMQ's `type T, all octets = <<...>>` prefix of frame errors.
pub fn describe_frame(kind: u8, payload: &[u8]) -> String {
    let which = if payload.len() > 16 { "first 16" } else { "all" };
    format!("type {kind}, {which} octets = {}", erlang_binary(payload))
}

/// Cuts the next complete frame out of `buf`, or returns `Ok(None)` if more bytes are needed.
/// A payload larger than `frame_max` is refused before it is buffered (RabbitMQ tolerates a
/// payload of exactly `frame_max`, as clients often forget the 8 bytes of framing).
pub fn next_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<RawFrame>, AmqpError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if size > frame_max as usize {
        let limit = frame_max.saturating_sub(FRAME_OVERHEAD as u32);
        return Err(AmqpError::frame(format!("{}: {{frame_too_large,{size},{limit}}}", describe_frame(kind, &[]))));
    }
    if buf.len() < size + FRAME_OVERHEAD {
        buf.reserve(size + FRAME_OVERHEAD - buf.len());
        return Ok(None);
    }
    let end = buf[7 + size];
    let payload = &buf[7..7 + size];
    if end != FRAME_END {
        return Err(AmqpError::frame(format!("{}: {{invalid_frame_end_marker,{end}}}", describe_frame(kind, payload))));
    }
    if !matches!(kind, FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT) {
        return Err(AmqpError::frame(format!("{}: unknown_frame", describe_frame(kind, payload))));
    }
    let mut frame = buf.split_to(size + FRAME_OVERHEAD).freeze();
    frame.advance(7);
    frame.truncate(size);
    Ok(Some(RawFrame { kind, channel, payload: frame }))
}

/// Decodes a method payload. Too short for ids: 501 `unknown_frame`; ids not in the protocol:
/// 503 COMMAND_INVALID (RabbitMQ drops the socket without a word here; we say why); malformed
/// arguments: 501 `cannot decode <<args>>`, as RabbitMQ.
pub fn decode_method(payload: &[u8]) -> Result<AMQPClass, AmqpError> {
    if payload.len() < 4 {
        return Err(AmqpError::frame(format!("{}: unknown_frame", describe_frame(FRAME_METHOD, payload))));
    }
    match parse_class(payload) {
        Ok((rest, m)) if rest.is_empty() => Ok(m),
        _ => {
            let (c, m) = (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]));
            if known_method(c, m) {
                Err(AmqpError::frame(format!("cannot decode {}", erlang_binary(&payload[4..]))).at(c, m))
            } else {
                Err(AmqpError::command_invalid(format!("unknown method class {c} method {m}")).at(c, m))
            }
        }
    }
}

/// Whether (class, method) is in the AMQP 0-9-1 + RabbitMQ method table.
fn known_method(class: u16, method: u16) -> bool {
    let methods: &[u16] = match class {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method)
}

pub fn decode_header(payload: &[u8]) -> Result<AMQPContentHeader, AmqpError> {
    match parse_content_header(payload) {
        Ok((rest, h)) if rest.is_empty() => Ok(h),
        _ => Err(AmqpError::frame("malformed content header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_without_copy_and_checked() {
        let mut b = BytesMut::from(&[1u8, 0, 5, 0, 0, 0, 2, 0xAA, 0xBB, FRAME_END, 8][..]);
        let f = next_frame(&mut b, 131072).unwrap().unwrap();
        assert_eq!((f.kind, f.channel, &f.payload[..]), (1, 5, &[0xAA, 0xBB][..]));
        assert_eq!(&b[..], &[8]);
        assert!(next_frame(&mut b, 131072).unwrap().is_none());
        let mut bad_end = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 0, 0x00][..]);
        assert_eq!(next_frame(&mut bad_end, 131072).unwrap_err().code, crate::broker::ReplyCode::FrameError);
        let mut too_big = BytesMut::from(&[3u8, 0, 1, 0, 0, 0x23, 0x28][..]);
        assert_eq!(
            next_frame(&mut too_big, 8192).unwrap_err().text,
            "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,9000,8184}"
        );
        let mut unknown = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, FRAME_END][..]);
        assert!(next_frame(&mut unknown, 8192).is_err());
    }

    #[test]
    fn unknown_methods_are_told_apart_from_malformed_ones() {
        assert_eq!(decode_method(&[0, 60, 0, 99]).unwrap_err().code, crate::broker::ReplyCode::CommandInvalid);
        assert_eq!(
            decode_method(&[0, 50, 0, 10, 0, 0, 5, 97, 98]).unwrap_err().text,
            "FRAME_ERROR - cannot decode <<0,0,5,97,98>>"
        );
        assert_eq!(
            decode_method(&[0, 50]).unwrap_err().text,
            "FRAME_ERROR - type 1, all octets = <<0,50>>: unknown_frame"
        );
    }

    #[test]
    fn erlang_binaries() {
        assert_eq!(erlang_binary(b""), "<<>>");
        assert_eq!(erlang_binary(b"x"), "<<\"x\">>");
        assert_eq!(erlang_binary(&[0, 50]), "<<0,50>>");
    }
}
