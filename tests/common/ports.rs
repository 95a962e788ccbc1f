//! Loopback ports for the processes a test starts (raftkv nodes, `raftctl
//! local`, Prometheus), reserved until the test process exits.
//!
//! Asking the OS for a free port and closing it before the node binds it
//! races: meanwhile the kernel may hand the port to any socket, and the
//! node exits with "Address already in use". Mostly to another port-0
//! bind, such as a parallel test's free port (on this machine a freed port
//! came back within the next 100 port-0 binds in 13 of 3000 trials); also
//! to the local port of an outgoing connection (Linux gives those the
//! other parity than port-0 binds, but raftctl local's nine consecutive
//! ports have both). A node binds its client port only after its
//! bootstrap, seconds after it started, and again after each restart.
//!
//! A reserved port is held by a socket bound to it without SO_REUSEADDR
//! (so the bind fails if anything holds the port) and then marked
//! reusable; it never listens. While it is held the kernel picks it for no
//! port-0 bind and no outgoing connection, and refuses it to any bind
//! without SO_REUSEADDR; the process the test starts still binds and
//! listens on it, because its listener sets SO_REUSEADDR (tokio's, std's
//! and Go's do) and Linux lets reusable sockets share a port while at most
//! one of them listens.

use std::sync::Mutex;
use tokio::net::TcpSocket;

/// The reserving sockets, held until the process exits.
static HELD: Mutex<Vec<TcpSocket>> = Mutex::new(Vec::new());

/// A socket holding 127.0.0.1:`port` (0: a port the kernel picks), or
/// None if something else holds that port.
pub fn hold(port: u16) -> Option<TcpSocket> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], port).into()).ok()?;
    socket.set_reuseaddr(true).unwrap();
    Some(socket)
}

fn port_of(socket: &TcpSocket) -> u16 {
    socket.local_addr().unwrap().port()
}

/// A loopback port nobody uses, reserved for this test process.
pub fn free_port() -> u16 {
    let socket = hold(0).expect("a free loopback port");
    let port = port_of(&socket);
    HELD.lock().unwrap().push(socket);
    port
}

/// A base port below 60000 with the `nodes` nodes' ports of `raftctl
/// local` and its link proxies (`base + 10 * node + 0..10`) all reserved
/// for this test process.
pub fn free_base_port(nodes: u16) -> u16 {
    loop {
        let first = hold(0).expect("a free loopback port");
        let base = port_of(&first);
        if base >= 60_000 {
            continue;
        }
        let rest: Option<Vec<TcpSocket>> = (0..nodes)
            .flat_map(|i| (0..10).map(move |k| base + 10 * i + k))
            .skip(1)
            .map(hold)
            .collect();
        if let Some(rest) = rest {
            let mut held = HELD.lock().unwrap();
            held.push(first);
            held.extend(rest);
            return base;
        }
    }
}
