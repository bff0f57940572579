//! Users, vhosts and permissions from the config file: login failures, 530 on vhost access,
//! 403 on each permission, validated user-id.

mod common;

use common::{Broker, expect_err};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use warren::config::{PermissionConfig, UserConfig, VhostConfig};

async fn broker() -> Broker {
    Broker::with(|c| {
        c.users = vec![
            UserConfig { name: "alice".into(), password: Some("secret".into()), password_hash: None, tags: vec![] },
            UserConfig { name: "bob".into(), password: Some("pw".into()), password_hash: None, tags: vec![] },
        ];
        c.vhosts = vec![VhostConfig { name: "v1".into() }];
        c.permissions = vec![
            PermissionConfig {
                user: "alice".into(),
                vhost: "/".into(),
                configure: "^alice-".into(),
                write: "^(alice-|amq\\.default)".into(),
                read: "^alice-".into(),
            },
            PermissionConfig {
                user: "bob".into(),
                vhost: "v1".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            },
        ];
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_refused() {
    let b = broker().await;
    let e =
        Connection::connect(&b.uri_for("alice", "wrong", "%2f"), ConnectionProperties::default()).await.unwrap_err();
    // lapin advertises authentication_failure_close, so it gets a 403 connection.close.
    let (code, text) = common::amqp_error(&e);
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
    );
    assert!(Connection::connect(&b.uri_for("nobody", "x", "%2f"), ConnectionProperties::default()).await.is_err());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vhost_access_is_checked_at_open() {
    let b = broker().await;
    let e =
        Connection::connect(&b.uri_for("guest", "guest", "nope"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(common::amqp_error(&e), (530, "NOT_ALLOWED - vhost nope not found".to_string()));
    let e =
        Connection::connect(&b.uri_for("alice", "secret", "v1"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(
        common::amqp_error(&e),
        (530, "NOT_ALLOWED - access to vhost 'v1' refused for user 'alice'".to_string())
    );
    let bob = Connection::connect(&b.uri_for("bob", "pw", "v1"), ConnectionProperties::default()).await.unwrap();
    let ch = bob.create_channel().await.unwrap();
    ch.queue_declare("bq".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_are_checked_on_every_method() {
    let b = broker().await;
    let alice =
        Connection::connect(&b.uri_for("alice", "secret", "%2f"), ConnectionProperties::default()).await.unwrap();
    let ch = alice.create_channel().await.unwrap();
    ch.queue_declare("alice-q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    common::publish(&ch, "", "alice-q", b"hi").await;
    assert!(ch.basic_get("alice-q".into(), BasicGetOptions { no_ack: true }).await.unwrap().is_some());
    expect_err(
        ch.queue_declare("other".into(), QueueDeclareOptions::default(), FieldTable::default()).await,
        403,
        "ACCESS_REFUSED - configure access to queue 'other' in vhost '/' refused for user 'alice'",
    );
    let ch = alice.create_channel().await.unwrap();
    expect_err(
        ch.exchange_declare("x".into(), ExchangeKind::Fanout, ExchangeDeclareOptions::default(), FieldTable::default())
            .await,
        403,
        "ACCESS_REFUSED - configure access to exchange 'x' in vhost '/' refused for user 'alice'",
    );
    // guest owns a queue alice cannot read.
    let (_g, gch) = b.channel().await;
    gch.queue_declare("guest-q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let ch = alice.create_channel().await.unwrap();
    expect_err(
        ch.basic_get("guest-q".into(), BasicGetOptions::default()).await,
        403,
        "ACCESS_REFUSED - read access to queue 'guest-q' in vhost '/' refused for user 'alice'",
    );
    // Publishing needs write on the exchange.
    let ch = alice.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let r = ch
        .basic_publish("amq.fanout".into(), "".into(), BasicPublishOptions::default(), b"x", BasicProperties::default())
        .await
        .unwrap()
        .await;
    let (code, text) = common::amqp_error(&r.unwrap_err());
    assert_eq!(
        (code, text.as_str()),
        (403, "ACCESS_REFUSED - write access to exchange 'amq.fanout' in vhost '/' refused for user 'alice'")
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_id_must_match_the_login() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch.queue_declare("q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let ok = ch
        .basic_publish(
            "".into(),
            "q".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_user_id("guest".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ok.is_ack());
    let r = ch
        .basic_publish(
            "".into(),
            "q".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_user_id("mallory".into()),
        )
        .await
        .unwrap()
        .await;
    let (code, text) = common::amqp_error(&r.unwrap_err());
    assert_eq!(
        (code, text.as_str()),
        (406, "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'")
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_logs_in_over_ipv4_on_a_dual_stack_listener() {
    // On [::], an IPv4 loopback client appears as ::ffff:127.0.0.1 and must count as loopback.
    let b = Broker::with(|c| c.amqp_addr = "[::]:0".parse().unwrap()).await;
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.addr.port());
    let conn = Connection::connect(&uri, ConnectionProperties::default()).await.expect("guest from 127.0.0.1 via [::]");
    conn.create_channel().await.unwrap();
    b.stop().await;
}

/// An address of this machine that is not loopback (the route to a documentation address;
/// no packet is sent), if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_uses_the_management_api_only_from_loopback() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: skipped");
        return;
    };
    let b = Broker::with(|c| c.http_addr = "0.0.0.0:0".parse().unwrap()).await;
    let port = b.running.as_ref().expect("running").http_addr.port();
    let status = |host: String| {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let r = agent
                .get(&format!("http://{host}:{port}/api/whoami"))
                .header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=");
            r.call().map(|r| r.status().as_u16()).unwrap_or(0)
        })
    };
    assert_eq!(status("127.0.0.1".into()).await.unwrap(), 200, "guest from loopback");
    assert_eq!(status(ip.to_string()).await.unwrap(), 401, "guest from {ip}");
    b.stop().await;
}
