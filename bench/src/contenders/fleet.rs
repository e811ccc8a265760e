//! The long-lived servers of the throughput and latency scenarios: the origin and one instance of every
//! contender the plan names, all started (and each proven ready) before the first round, and all
//! stopped when the fleet is dropped.

use std::net::{Ipv4Addr, SocketAddr};

use super::{origin, Context, Server, ServerSpec};
use crate::process::ServerProcess;

#[derive(Debug)]
pub struct Fleet {
    /// The origin's nginx, iperf3 and nats-server.
    origin: Vec<ServerProcess>,
    servers: Vec<Server>,
}

impl Fleet {
    /// Starts the origin, then each distinct spec once.
    pub async fn start(ctx: &Context, specs: &[ServerSpec]) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet {
            origin: origin::start(ctx).await?,
            servers: Vec::new(),
        };
        for spec in specs {
            if fleet.server(spec).is_some() {
                continue;
            }
            eprintln!("sidecar-bench: starting {}", spec.describe());
            let server = spec.start(ctx).await?;
            fleet.servers.push(server);
        }
        Ok(fleet)
    }

    pub fn server(&self, spec: &ServerSpec) -> Option<&Server> {
        self.servers.iter().find(|server| server.spec == *spec)
    }

    /// The port of a started server; the plan only names servers the fleet started.
    pub fn port(&self, spec: &ServerSpec) -> anyhow::Result<u16> {
        self.server(spec)
            .map(|server| server.port)
            .ok_or_else(|| anyhow::anyhow!("{} was not started", spec.describe()))
    }

    /// The admin port's address (on 127.0.0.1) of a started sidecar-proxy.
    pub fn admin(&self, spec: &ServerSpec) -> anyhow::Result<SocketAddr> {
        self.server(spec)
            .and_then(|server| server.admin_port)
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .ok_or_else(|| anyhow::anyhow!("{} has no admin port", spec.describe()))
    }

    /// Fails, with the log tail, if any server has died (a crash mid-run must not pass for a slow row).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        let servers = self.servers.iter_mut().map(|server| &mut server.process);
        for process in self.origin.iter_mut().chain(servers) {
            process.ensure_running()?;
        }
        Ok(())
    }
}
