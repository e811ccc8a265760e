//! The sidecars under soak, one per listener kind the load needs, each with capture on (rotated, so the
//! disk use of an hour's run stays bounded) and its own admin port for /readyz and /metrics.
//!
//! Transparent mode is left out: it needs root for iptables redirection inside a network namespace.
//! Behind the redirection it hands connections to the same relay and capture code these three run
//! (docs/soak.md says what that leaves uncovered).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::origin::Origin;
use sidecar_bench::contenders::sidecar::Flags;
use sidecar_bench::ports::PortAllocator;
use sidecar_bench::probe;
use sidecar_bench::process::ServerProcess;

/// Each capture file rotates at this size and keeps this many old ones: at most 3 × 32 MiB per sidecar.
const CAPTURE_ROTATE_SIZE: &str = "32MiB";
const CAPTURE_ROTATE_KEEP: &str = "2";
/// Bodies are kept in records up to this many bytes: `/large` (256 KiB) is cut, so the capture's
/// truncation path runs on every large response, and the files rotate at a pace a CI disk can take.
const CAPTURE_BODY_LIMIT: &str = "64KiB";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub const TCP_HTTP: &str = "dual-tcp-http";
pub const SOCKS: &str = "dual-socks";
pub const REVERSE_HTTP: &str = "reverse-http";

pub struct Sidecar {
    pub name: &'static str,
    /// The flags that choose its mode, as a reader would type them.
    pub mode: String,
    pub process: ServerProcess,
    pub admin: SocketAddr,
    pub inbound: SocketAddr,
    /// The outbound listener of a dual sidecar.
    pub outbound: Option<SocketAddr>,
}

pub struct Fleet {
    pub sidecars: Vec<Sidecar>,
}

struct Plan {
    name: &'static str,
    proxy_type: &'static str,
    protocol: &'static str,
    /// Where the inbound listener delivers (the app of a pod).
    app: SocketAddr,
    dual: bool,
}

impl Fleet {
    /// Starts the three sidecars and waits until each answers /readyz.
    pub async fn start(proxy_bin: &Path, origin: &Origin, out: &Path) -> anyhow::Result<Fleet> {
        let plans = [
            Plan {
                name: TCP_HTTP,
                proxy_type: "dual",
                protocol: "tcp:http",
                app: origin.echo,
                dual: true,
            },
            Plan {
                name: SOCKS,
                proxy_type: "dual",
                protocol: "socks",
                // Inbound SOCKS always delivers to the app, whatever destination the client names
                // (following it would make the pod an open proxy); outbound follows the client.
                app: origin.http,
                dual: true,
            },
            Plan {
                name: REVERSE_HTTP,
                proxy_type: "reverse",
                protocol: "http",
                app: origin.http,
                dual: false,
            },
        ];
        let ports = PortAllocator::default();
        let mut sidecars = Vec::with_capacity(plans.len());
        for plan in plans {
            sidecars.push(start_one(proxy_bin, plan, &ports, out)?);
        }
        let mut fleet = Fleet { sidecars };
        for sidecar in &mut fleet.sidecars {
            probe::until_ready(&mut sidecar.process, sidecar.admin, READY_TIMEOUT).await?;
        }
        Ok(fleet)
    }

    pub fn get(&self, name: &str) -> &Sidecar {
        self.sidecars
            .iter()
            .find(|sidecar| sidecar.name == name)
            .unwrap_or_else(|| panic!("the fleet has no sidecar {name}"))
    }

    pub fn describe(&self) -> String {
        self.sidecars
            .iter()
            .map(|s| format!("{} pid {}", s.name, s.process.pid()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn stop(&mut self) {
        for sidecar in &mut self.sidecars {
            sidecar.process.stop();
        }
    }
}

fn start_one(
    proxy_bin: &Path,
    plan: Plan,
    ports: &PortAllocator,
    out: &Path,
) -> anyhow::Result<Sidecar> {
    let localhost = Ipv4Addr::LOCALHOST;
    let inbound = SocketAddr::from((localhost, ports.next()?));
    let outbound = if plan.dual {
        Some(SocketAddr::from((localhost, ports.next()?)))
    } else {
        None
    };
    let admin = SocketAddr::from((localhost, ports.next()?));
    let mut flags =
        Flags::new(plan.proxy_type, plan.protocol).inbound(inbound.port(), plan.app.port());
    if let Some(outbound) = outbound {
        flags = flags.outbound(outbound.port());
    }
    let capture = out.join(format!("capture-{}.jsonl", plan.name));
    let flags = flags
        .admin(admin.port())
        .capture_file(&capture, CAPTURE_ROTATE_SIZE, CAPTURE_ROTATE_KEEP)
        .push(&["--capture-body-limit", CAPTURE_BODY_LIMIT]);
    let mut command = Command::new(proxy_bin);
    command.args(flags.0);
    let log = out.join(format!("{}.log", plan.name));
    let process = ServerProcess::spawn(plan.name, command, &log)?;
    Ok(Sidecar {
        name: plan.name,
        mode: format!(
            "--proxy-type {} --proxy-protocol {}",
            plan.proxy_type, plan.protocol
        ),
        process,
        admin,
        inbound,
        outbound,
    })
}
