//! Connection handshake (AMQP 0-9-1 §2.2.4): protocol header, start/start-ok (SASL PLAIN or
//! AMQPLAIN), tune/tune-ok, open/open-ok. Negotiation rules and texts follow RabbitMQ's
//! `rabbit_reader.erl`.

use super::error::AmqpError;
use super::frame::{self, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER, RawFrame};
use super::out::Out;
use crate::broker::{ReplyCode, password};
use crate::node::Node;
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;

/// The initial frame size limit before tune-ok (RabbitMQ's `initial_frame_max`).
pub const FRAME_MIN_SIZE: u32 = 8192;

/// What the handshake settled.
#[derive(Debug)]
pub struct Negotiated {
    pub user: String,
    pub vhost: String,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub caps: ClientCaps,
    pub connection_name: Option<String>,
    pub client_properties: amq_protocol::types::FieldTable,
    pub mechanism: String,
}

/// The client capabilities that change what the server may send.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub authentication_failure_close: bool,
    pub connection_blocked: bool,
}

/// How the handshake ended when it did not succeed.
#[derive(Debug)]
pub enum Refusal {
    /// Close the socket without a word (bad header answered already, auth failure for a client
    /// that does not understand `authentication_failure_close`, or the peer went away).
    Silent,
    /// Send `connection.close` with this error.
    Close(AmqpError),
}

impl From<AmqpError> for Refusal {
    fn from(e: AmqpError) -> Self {
        Refusal::Close(e)
    }
}

pub struct Handshake<'a> {
    pub node: &'a Node,
    pub reader: &'a mut OwnedReadHalf,
    pub rbuf: &'a mut BytesMut,
    pub out: &'a mut Out,
    pub peer: SocketAddr,
}

use crate::broker::argument::long_string as s;

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(ShortString::from(c), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p.insert("product".into(), s("Warren"));
    p.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
    p.insert("platform".into(), s("Rust"));
    p.insert("cluster_name".into(), s("warren"));
    p.insert("copyright".into(), s("The Warren authors"));
    p.insert("information".into(), s("Licensed under the Apache License 2.0"));
    p
}

impl Handshake<'_> {
    async fn read_frame(&mut self, frame_max: u32) -> Result<RawFrame, Refusal> {
        loop {
            if let Some(f) = frame::next_frame(self.rbuf, frame_max)? {
                if f.kind == FRAME_HEARTBEAT {
                    continue;
                }
                return Ok(f);
            }
            match self.reader.read_buf(self.rbuf).await {
                Ok(0) | Err(_) => return Err(Refusal::Silent),
                Ok(_) => {}
            }
        }
    }

    /// Reads the next method on channel 0; anything else is 505/504 as RabbitMQ.
    async fn read_method(&mut self, frame_max: u32) -> Result<AMQPClass, Refusal> {
        let f = self.read_frame(frame_max).await?;
        if f.kind != FRAME_METHOD {
            return Err(AmqpError::unexpected_frame(format!(
                "expected a method frame during the handshake, got frame type {}",
                f.kind
            ))
            .into());
        }
        if f.channel != 0 {
            return Err(AmqpError::channel_error(format!(
                "expected a frame on channel 0 during the handshake, got channel {}",
                f.channel
            ))
            .into());
        }
        Ok(frame::decode_method(&f.payload)?)
    }

    pub async fn run(mut self) -> Result<Negotiated, Refusal> {
        // Protocol header.
        while self.rbuf.len() < 8 {
            match self.reader.read_buf(self.rbuf).await {
                Ok(0) | Err(_) => return Err(Refusal::Silent),
                Ok(_) => {}
            }
        }
        if &self.rbuf[..8] != PROTOCOL_HEADER {
            self.out.raw(PROTOCOL_HEADER);
            return Err(Refusal::Silent);
        }
        let _ = self.rbuf.split_to(8);

        let start = connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongString::from(b"PLAIN AMQPLAIN".to_vec()),
            locales: LongString::from(b"en_US".to_vec()),
        };
        self.out.method(0, AMQPClass::Connection(connection::AMQPMethod::Start(start)));
        self.out.flush().await;

        let AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) = self.read_method(FRAME_MIN_SIZE).await? else {
            return Err(AmqpError::command_invalid("expected 'connection.start_ok'").at(10, 11).into());
        };
        let caps = client_caps(&ok.client_properties);
        let connection_name =
            ok.client_properties.inner().get("connection_name").and_then(crate::broker::argument::as_str);
        let mechanism = ok.mechanism.as_str().to_owned();
        let user = self.authenticate(&mechanism, ok.response.as_bytes(), caps)?;

        let cfg = self.node.config();
        let tune =
            connection::Tune { channel_max: cfg.channel_max, frame_max: cfg.frame_max, heartbeat: cfg.heartbeat };
        self.out.method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(tune)));
        self.out.flush().await;

        let AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)) = self.read_method(FRAME_MIN_SIZE).await? else {
            return Err(AmqpError::command_invalid("expected 'connection.tune_ok'").at(10, 31).into());
        };
        let frame_max = negotiate("frame_max", t.frame_max, cfg.frame_max, FRAME_MIN_SIZE)?;
        let channel_max = negotiate("channel_max", t.channel_max as u32, cfg.channel_max as u32, 1)? as u16;

        let AMQPClass::Connection(connection::AMQPMethod::Open(open)) = self.read_method(frame_max).await? else {
            return Err(AmqpError::command_invalid("expected 'connection.open'").at(10, 40).into());
        };
        let vhost = open.virtual_host.as_str().to_owned();
        let topo = self.node.topology();
        let Some(v) = topo.meta.vhosts.get(&vhost) else {
            return Err(AmqpError::not_allowed(format!("vhost {vhost} not found")).at(10, 40).into());
        };
        if !v.permissions.contains_key(&user) {
            return Err(AmqpError::not_allowed(format!("access to vhost '{vhost}' refused for user '{user}'"))
                .at(10, 40)
                .into());
        }
        self.out.method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})));
        self.out.flush().await;
        Ok(Negotiated {
            user,
            vhost,
            frame_max,
            channel_max,
            heartbeat: t.heartbeat,
            caps,
            connection_name,
            client_properties: ok.client_properties,
            mechanism,
        })
    }

    fn authenticate(&self, mechanism: &str, response: &[u8], caps: ClientCaps) -> Result<String, Refusal> {
        let refuse = |why: &str| {
            tracing::warn!(peer = %self.peer, mechanism, "authentication failed: {why}");
            if caps.authentication_failure_close {
                let text = format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                );
                Refusal::Close(AmqpError::new(ReplyCode::AccessRefused, text))
            } else {
                Refusal::Silent
            }
        };
        let creds = match mechanism {
            "PLAIN" => parse_plain(response),
            "AMQPLAIN" => parse_amqplain(response),
            other => {
                return Err(Refusal::Close(
                    AmqpError::command_invalid(format!("unknown authentication mechanism '{other}'")).at(10, 11),
                ));
            }
        };
        let Some((user, pass)) = creds else {
            return Err(refuse("malformed response"));
        };
        let topo = self.node.topology();
        let Some(u) = topo.meta.users.get(&user) else {
            return Err(refuse(&format!("user '{user}' - invalid credentials")));
        };
        if !password::verify(&pass, &u.password_hash) {
            return Err(refuse(&format!("user '{user}' - invalid credentials")));
        }
        if !may_log_in_from(&user, self.peer.ip(), &self.node.config().loopback_users) {
            return Err(refuse(&format!("user '{user}' can only connect via localhost")));
        }
        Ok(user)
    }
}

use crate::broker::permission::may_log_in_from;

/// RabbitMQ's `validate_negotiated_integer_value`: 0 from the client means "no limit", which
/// exceeds any server limit.
fn negotiate(field: &str, client: u32, server: u32, min: u32) -> Result<u32, AmqpError> {
    if client != 0 && client < min {
        return Err(AmqpError::not_allowed(format!("{field}={client} < {min} min size")).at(10, 31));
    }
    if server != 0 && (client == 0 || client > server) {
        return Err(AmqpError::not_allowed(format!("{field}={client} > {server} max size")).at(10, 31));
    }
    Ok(if client == 0 { server } else { client })
}

fn parse_plain(resp: &[u8]) -> Option<(String, String)> {
    let mut parts = resp.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    let pass = std::str::from_utf8(parts.next()?).ok()?.to_owned();
    Some((user, pass))
}

fn parse_amqplain(resp: &[u8]) -> Option<(String, String)> {
    let mut framed = (resp.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(resp);
    let (_, table) = amq_protocol::types::parsing::parse_field_table(&framed[..]).ok()?;
    let get = |k: &str| table.inner().get(k).and_then(crate::broker::argument::as_str);
    Some((get("LOGIN")?, get("PASSWORD")?))
}

fn client_caps(props: &FieldTable) -> ClientCaps {
    let Some(AMQPValue::FieldTable(c)) = props.inner().get("capabilities") else {
        return ClientCaps::default();
    };
    let on = |k: &str| matches!(c.inner().get(k), Some(AMQPValue::Boolean(true)));
    ClientCaps {
        consumer_cancel_notify: on("consumer_cancel_notify"),
        authentication_failure_close: on("authentication_failure_close"),
        connection_blocked: on("connection.blocked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tune_negotiation_follows_rabbitmq() {
        assert_eq!(negotiate("frame_max", 131072, 131072, 8192).unwrap(), 131072);
        assert_eq!(negotiate("frame_max", 8192, 131072, 8192).unwrap(), 8192);
        assert_eq!(
            negotiate("frame_max", 4096, 131072, 8192).unwrap_err().text,
            "NOT_ALLOWED - frame_max=4096 < 8192 min size"
        );
        assert!(negotiate("frame_max", 0, 131072, 8192).is_err());
        assert!(negotiate("frame_max", 200000, 131072, 8192).is_err());
    }

    #[test]
    fn loopback_users_only_from_loopback() {
        let lb = vec!["guest".to_string()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(may_log_in_from("guest", ip("127.0.0.1"), &lb));
        assert!(may_log_in_from("guest", ip("::1"), &lb));
        assert!(may_log_in_from("guest", ip("::ffff:127.0.0.1"), &lb));
        assert!(!may_log_in_from("guest", ip("10.1.2.3"), &lb));
        assert!(!may_log_in_from("guest", ip("::ffff:192.168.1.9"), &lb));
        assert!(may_log_in_from("alice", ip("10.1.2.3"), &lb));
        assert!(may_log_in_from("guest", ip("10.1.2.3"), &[]));
    }

    #[test]
    fn sasl_responses() {
        assert_eq!(parse_plain(b"\0guest\0pw"), Some(("guest".into(), "pw".into())));
        assert_eq!(parse_plain(b"guest"), None);
    }
}
