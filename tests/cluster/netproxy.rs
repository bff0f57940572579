//! Partitions between nodes on one machine: each node listens for its peers behind a TCP
//! proxy, and each node's connections to its peers come from an address of its own
//! (127.0.0.11, .12, ...; Warren connects from its `--cluster-addr`'s IP), so a proxy knows
//! which node a connection comes from. Cutting a pair of nodes black-holes what flows
//! between them, both ways: data stops without a reset (as a real partition), and new
//! connections are accepted and then hear nothing. Healing closes the held connections, so
//! the nodes connect again.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The address node `i` (0-based) connects to its peers from.
pub fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8))
}

/// A free port on `ip`.
pub fn free_on(ip: IpAddr) -> SocketAddr {
    std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

/// Which node an address belongs to.
fn node_of(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] >= 11 => {
            Some(usize::from(v4.octets()[3] - 11))
        }
        _ => None,
    }
}

/// The links that are cut, as (from, to) pairs of node indexes.
#[derive(Clone, Default)]
pub struct Net {
    cut: Arc<watch::Sender<BTreeSet<(usize, usize)>>>,
}

impl Net {
    pub fn new() -> Self {
        Self { cut: Arc::new(watch::channel(BTreeSet::new()).0) }
    }

    /// Cuts node `i` off from every other of `n` nodes.
    pub fn isolate(&self, i: usize, n: usize) {
        self.cut.send_modify(|c| {
            for j in (0..n).filter(|&j| j != i) {
                c.insert((i, j));
                c.insert((j, i));
            }
        });
    }

    /// Every link works again.
    pub fn heal(&self) {
        self.cut.send_replace(BTreeSet::new());
    }

    /// Serves the proxy of node `target` on a port of `ip` the kernel picks (never a port
    /// found free earlier and bound later: another test's connection may take it meanwhile),
    /// other than `real`'s; what arrives goes to `real`, the node's own listener. Answers the
    /// proxy's address, the one peers dial.
    pub fn serve(&self, target: usize, ip: std::net::IpAddr, real: SocketAddr) -> SocketAddr {
        let std = loop {
            let l = std::net::TcpListener::bind((ip, 0)).expect("bind the proxy");
            if l.local_addr().unwrap() != real {
                break l;
            }
        };
        let listen = std.local_addr().unwrap();
        std.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(std).unwrap();
        let cut = self.cut.subscribe();
        tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                let Some(from) = node_of(peer.ip()) else { continue };
                tokio::spawn(relay(inbound, real, (from, target), cut.clone()));
            }
        });
        listen
    }
}

/// Whether the link is cut now.
fn is_cut(cut: &watch::Receiver<BTreeSet<(usize, usize)>>, link: (usize, usize)) -> bool {
    cut.borrow().contains(&link)
}

/// Moves bytes both ways while the link is not cut; once it is, holds both sockets silent
/// until it heals, then closes them.
async fn relay(
    inbound: TcpStream,
    real: SocketAddr,
    link: (usize, usize),
    cut: watch::Receiver<BTreeSet<(usize, usize)>>,
) {
    if is_cut(&cut, link) {
        let _held = inbound;
        until(&mut cut.clone(), link, false).await;
        return;
    }
    let Ok(outbound) = TcpStream::connect(real).await else { return };
    let (ar, aw) = inbound.into_split();
    let (br, bw) = outbound.into_split();
    // Each way on its own, so that neither waits on the other (one copy loop for both can
    // deadlock when both sides write at once).
    let there = tokio::spawn(pump(ar, bw, link, cut.clone()));
    let back = tokio::spawn(pump(br, aw, link, cut));
    let _ = tokio::join!(there, back);
}

/// Copies one way until the end, or holds still from the cut to the heal.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: (usize, usize),
    mut cut: watch::Receiver<BTreeSet<(usize, usize)>>,
) {
    let mut held = cut.clone();
    tokio::select! {
        _ = tokio::io::copy(&mut from, &mut to) => {
            let _ = to.shutdown().await;
        }
        _ = until(&mut cut, link, true) => until(&mut held, link, false).await,
    }
}

/// Waits until the link is cut (`cut`) or healed (`!cut`).
async fn until(rx: &mut watch::Receiver<BTreeSet<(usize, usize)>>, link: (usize, usize), cut: bool) {
    let _ = rx.wait_for(|c| c.contains(&link) == cut).await.map(|_| ());
}
