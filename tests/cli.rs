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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `WARREN_DEFAULT_USER` / `WARREN_DEFAULT_PASS` (RabbitMQ's `RABBITMQ_DEFAULT_USER` / `_PASS`)
/// make that administrator instead of guest; `ctl check_ready` (the containers' probe) passes
/// for it, fails with 77 for a user that does not exist and with 69 where nothing answers.
#[test]
fn the_default_user_from_the_environment_replaces_guest_and_check_ready_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (amqp, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let prometheus = format!("127.0.0.1:{}", free_port());
    let server = |user: Option<&str>, pass: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warren"));
        c.args(["server", "--amqp-addr", &amqp, "--http-addr", &http, "--prometheus-addr", &prometheus]);
        c.args(["--data-dir", dir.path().to_str().unwrap()]);
        c.env_remove("WARREN_DEFAULT_USER").env_remove("WARREN_DEFAULT_PASS");
        if let Some(u) = user {
            c.env("WARREN_DEFAULT_USER", u);
        }
        if let Some(p) = pass {
            c.env("WARREN_DEFAULT_PASS", p);
        }
        c
    };
    let half = server(Some("admin"), None).output().unwrap();
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("WARREN_DEFAULT_USER needs WARREN_DEFAULT_PASS"));

    let mut node = server(Some("admin"), Some("s3cret")).stderr(std::process::Stdio::null()).spawn().unwrap();
    let up = warren(&["ctl", "--amqp-addr", &amqp, "await_startup", "-t", "30"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let ctl = |user: &str, pass: &str, args: &[&str]| {
        let mut all = vec!["ctl", "--http-addr", &http, "--username", user, "--password", pass];
        all.extend(args);
        warren(&all)
    };
    let ready = ctl("admin", "s3cret", &["check_ready"]);
    assert!(ready.status.success(), "{}", String::from_utf8_lossy(&ready.stderr));
    assert_eq!(String::from_utf8_lossy(&ready.stdout).trim(), "Node is ready to serve clients");
    let users = ctl("admin", "s3cret", &["-s", "list_users"]);
    assert_eq!(String::from_utf8_lossy(&users.stdout), "admin\t[administrator]\n");
    assert_eq!(ctl("guest", "guest", &["check_ready"]).status.code(), Some(77), "guest was not created");
    let _ = node.kill();
    let _ = node.wait();
    let nothing = ctl("admin", "s3cret", &["-t", "2", "check_ready"]);
    assert_eq!(nothing.status.code(), Some(69));
}
