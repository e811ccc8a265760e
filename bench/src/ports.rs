//! Free ports on 127.0.0.1 for the servers of one run. The kernel picks a free port (bind to port 0);
//! the allocator remembers what it handed out, so two servers of the run never get the same one even
//! though each port is released before its server binds it. Another program could still take it in
//! between: the server then fails to start, and its readiness check says so.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use anyhow::Context as _;

#[derive(Debug, Default)]
pub struct PortAllocator {
    handed_out: Mutex<HashSet<u16>>,
}

impl PortAllocator {
    pub fn next(&self) -> anyhow::Result<u16> {
        let mut handed_out = self
            .handed_out
            .lock()
            .map_err(|_| anyhow::anyhow!("the port allocator's lock is poisoned"))?;
        for _ in 0..1000 {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .context("cannot bind 127.0.0.1:0 to find a free port")?;
            let port = listener.local_addr()?.port();
            if handed_out.insert(port) {
                return Ok(port);
            }
        }
        anyhow::bail!("no free port on 127.0.0.1 after 1000 tries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports = PortAllocator::default();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(ports.next().unwrap()));
        }
    }
}
