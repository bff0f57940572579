//! The `warren` binary: `ctl ping`, `ctl await_startup`, usage errors, bad configuration.

mod common;

use common::Broker;
use std::process::Command;

fn warren(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warren")).args(args).output().expect("run warren")
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_and_await_startup_against_a_live_node() {
    let b = Broker::start().await;
    let addr = b.addr.to_string();
    let out = tokio::task::spawn_blocking(move || warren(&["ctl", "ping", "--amqp-addr", &addr])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Ping succeeded");
    let addr = b.addr.to_string();
    let out = tokio::task::spawn_blocking(move || warren(&["ctl", "await_startup", "--amqp-addr", &addr, "-t", "5"]))
        .await
        .unwrap();
    assert!(out.status.success());
    b.stop().await;
}

#[test]
fn ping_fails_clearly_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = warren(&["ctl", "ping", "--amqp-addr", &format!("127.0.0.1:{port}"), "-t", "2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ping_refuses_a_server_that_is_not_amqp() {
    // A listener that answers with HTTP.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 8];
        let _ = s.read(&mut b);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let out = warren(&["ctl", "ping", "--amqp-addr", &addr.to_string(), "-t", "2"]);
    t.join().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not with AMQP"));
}

#[test]
fn wrong_arguments_get_usage_and_a_non_zero_exit() {
    let out = warren(&["ctl", "no_such_command"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    let out = warren(&["server", "--amqp-addr", "not-an-address"]);
    assert!(!out.status.success());
}

#[test]
fn bad_config_stops_the_server_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("warren.toml");
    std::fs::write(&cfg, "frame_max = 100\n").unwrap();
    let out = warren(&["server", "--config", cfg.to_str().unwrap(), "--amqp-addr", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frame_max 100 is below the AMQP minimum 8192"));
    std::fs::write(&cfg, "no_such_setting = 1\n").unwrap();
    let out = warren(&["server", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no_such_setting"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_in_use_stops_the_server_with_a_clear_error() {
    let b = Broker::start().await;
    let dir = b.dir.as_ref().unwrap().path().to_str().unwrap().to_owned();
    let out =
        tokio::task::spawn_blocking(move || warren(&["server", "--amqp-addr", "127.0.0.1:0", "--data-dir", &dir]))
            .await
            .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    b.stop().await;
}

#[test]
fn a_data_directory_with_other_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = warren(&["server", "--amqp-addr", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no Warren data"));
    assert!(dir.path().join("notes.txt").exists());
}
