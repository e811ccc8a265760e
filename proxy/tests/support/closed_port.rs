//! A port nothing listens on, held for the whole test: bound, so no other test's listener can take the
//! number in the meantime, but not listening, so every connection to it is refused. A port found free and
//! then let go can be handed to a parallel test's listener before the sidecar dials it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpSocket;

pub struct ClosedPort {
    pub port: u16,
    _held: Vec<TcpSocket>,
}

impl ClosedPort {
    /// The port on 127.0.0.1.
    #[allow(dead_code)] // not every test binary that includes support/ dials it by address
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

pub fn closed_port() -> ClosedPort {
    let v4 = TcpSocket::new_v4().unwrap();
    v4.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = v4.local_addr().unwrap().port();
    let mut held = vec![v4];
    // `localhost` may resolve to ::1 first: the same port is held there too when IPv6 is up.
    if let Ok(v6) = TcpSocket::new_v6() {
        if v6
            .bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
            .is_ok()
        {
            held.push(v6);
        }
    }
    ClosedPort { port, _held: held }
}
