//! The commands that need only the AMQP port: `ping` (as `rabbitmq-diagnostics ping`) and
//! `await_startup` (as `rabbitmqctl await_startup`).

use super::CtlError;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Checks that a node accepts AMQP 0-9-1 connections: sends the protocol header and expects
/// `connection.start` (a method frame on channel 0, class 10, method 10).
pub async fn ping(addr: SocketAddr, timeout: Duration) -> Result<(), CtlError> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|source| CtlError::Connect { addr, source })?;
        s.write_all(b"AMQP\x00\x00\x09\x01").await.map_err(|source| CtlError::Connect { addr, source })?;
        let mut head = [0u8; 11];
        s.read_exact(&mut head).await.map_err(|_| CtlError::NotAmqp { addr })?;
        // type 1, channel 0, size (4 bytes), class 10, method 10
        if head[0] == 1 && head[1..3] == [0, 0] && head[7..11] == [0, 10, 0, 10] {
            Ok(())
        } else {
            Err(CtlError::NotAmqp { addr })
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| CtlError::Timeout { addr, secs: timeout.as_secs() })?
}

/// Waits until `ping` succeeds or `timeout` passes.
pub async fn await_startup(addr: SocketAddr, timeout: Duration) -> Result<(), CtlError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ping(addr, left.min(Duration::from_secs(2))).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Runs `ping` or `await_startup` on a small runtime of its own and prints rabbitmqctl's line.
pub fn run(addr: SocketAddr, timeout: Duration, wait: bool) -> Result<(), CtlError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CtlError::Io { path: "the runtime".into(), source })?;
    if wait {
        rt.block_on(await_startup(addr, timeout))?;
        println!("Node is running");
    } else {
        rt.block_on(ping(addr, timeout))?;
        println!("Ping succeeded");
    }
    Ok(())
}
