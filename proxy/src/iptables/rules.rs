//! The nat-table rules of transparent mode, as data: which chains, which rules in which order.
//!
//! Shaped like linkerd2-proxy-init and istio-iptables: the built-in PREROUTING and OUTPUT chains get one
//! jump each into a chain of our own, so our rules sit together, can be flushed and rebuilt without touching
//! anyone else's, and read top to bottom as "what is left alone, then redirect the rest":
//!
//! ```text
//! PREROUTING -p tcp -> SPEEDSCALE_INBOUND: RETURN ignored inbound ports, admin port, the sidecar's own ports
//!                                     -> SPEEDSCALE_INBOUND_REDIRECT: REDIRECT --to-ports <in-port>
//! OUTPUT     -p tcp -> SPEEDSCALE_OUTPUT:  RETURN the sidecar's uid, -o lo, ignored outbound ports
//!                                     -> SPEEDSCALE_OUTBOUND_REDIRECT: REDIRECT --to-ports <out-port>
//! ```
//!
//! Every rule carries a `-m comment` starting with `sidecar-proxy:` so an operator reading `iptables-save`
//! sees who added it and why. Pure: nothing here runs iptables.

use crate::config::{PortList, RedirectSettings};

// Vendor-prefixed (as istio's ISTIO_*): `-F` on a chain another tool also calls PROXY_INBOUND would wipe
// its rules.

/// Inbound traffic enters here from PREROUTING.
pub const INBOUND_CHAIN: &str = "SPEEDSCALE_INBOUND";
/// Inbound traffic that is not left alone is redirected here.
pub const INBOUND_REDIRECT_CHAIN: &str = "SPEEDSCALE_INBOUND_REDIRECT";
/// Locally generated (outbound) traffic enters here from OUTPUT.
pub const OUTBOUND_CHAIN: &str = "SPEEDSCALE_OUTPUT";
/// Outbound traffic that is not left alone is redirected here.
pub const OUTBOUND_REDIRECT_CHAIN: &str = "SPEEDSCALE_OUTBOUND_REDIRECT";

/// The sidecar container's default uid: its own connections must never be redirected back to itself.
pub const DEFAULT_PROXY_UID: u32 = 2102;
/// The admin listener's default port (health probes and metrics reach it directly).
pub const DEFAULT_ADMIN_PORT: u16 = 4191;

/// The table every rule lives in.
pub const TABLE: &str = "nat";

/// Everything the rules depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInputs {
    pub redirect: RedirectSettings,
    /// Connections opened by this uid (the sidecar's) pass untouched.
    pub proxy_uid: u32,
    /// Inbound connections to this port reach the admin listener directly.
    pub admin_port: u16,
}

/// One rule: the chain it is appended to and its match and target arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub chain: &'static str,
    /// Everything after `-A <chain>`.
    pub spec: Vec<String>,
}

/// The whole rule set, in the order it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    /// Our chains, created if missing and flushed before their rules are added.
    pub chains: Vec<&'static str>,
    /// The rules inside our chains, in order.
    pub rules: Vec<Rule>,
    /// The jumps from the built-in chains into ours, each added only if not already present.
    pub jumps: Vec<Rule>,
}

impl RuleSet {
    pub fn new(inputs: &RuleInputs) -> RuleSet {
        let RedirectSettings {
            in_port,
            out_port,
            ignore_inbound,
            ignore_outbound,
        } = &inputs.redirect;
        let mut rules = Vec::new();

        // Inbound: what stays out of the sidecar goes first; RETURN hands it back to PREROUTING, which
        // delivers it unchanged.
        rules.extend(ignored(
            INBOUND_CHAIN,
            ignore_inbound,
            "ignore-inbound-ports",
        ));
        rules.push(rule(
            INBOUND_CHAIN,
            &tcp_dport(&inputs.admin_port.to_string()),
            &format!("admin port {} (probes, metrics)", inputs.admin_port),
            &["-j", "RETURN"],
        ));
        // A connection made straight to a listener was not redirected; the proxy refuses those instead of
        // relaying them to itself, and leaving them unchanged keeps that visible.
        for (port, what) in [(in_port, "in-port"), (out_port, "out-port")] {
            rules.push(rule(
                INBOUND_CHAIN,
                &tcp_dport(&port.to_string()),
                &format!("sidecar {what} {port}"),
                &["-j", "RETURN"],
            ));
        }
        rules.push(rule(
            INBOUND_CHAIN,
            &["-p", "tcp"],
            "other inbound tcp",
            &["-j", INBOUND_REDIRECT_CHAIN],
        ));
        rules.push(rule(
            INBOUND_REDIRECT_CHAIN,
            &["-p", "tcp"],
            &format!("redirect inbound to in-port {in_port}"),
            &["-j", "REDIRECT", "--to-ports", &in_port.to_string()],
        ));

        // Outbound: the sidecar's own connections first, or everything it relays would loop back into it.
        let uid = inputs.proxy_uid.to_string();
        rules.push(rule(
            OUTBOUND_CHAIN,
            &["-m", "owner", "--uid-owner", &uid],
            &format!("sidecar uid {uid} (its own traffic)"),
            &["-j", "RETURN"],
        ));
        // Traffic that stays inside the pod (localhost, or the pod's own IP, routed over lo) is not outbound.
        rules.push(rule(
            OUTBOUND_CHAIN,
            &["-o", "lo"],
            "loopback (traffic inside the pod)",
            &["-j", "RETURN"],
        ));
        rules.extend(ignored(
            OUTBOUND_CHAIN,
            ignore_outbound,
            "ignore-outbound-ports",
        ));
        rules.push(rule(
            OUTBOUND_CHAIN,
            &["-p", "tcp"],
            "other outbound tcp",
            &["-j", OUTBOUND_REDIRECT_CHAIN],
        ));
        rules.push(rule(
            OUTBOUND_REDIRECT_CHAIN,
            &["-p", "tcp"],
            &format!("redirect outbound to out-port {out_port}"),
            &["-j", "REDIRECT", "--to-ports", &out_port.to_string()],
        ));

        // The jumps never depend on the settings, so a re-run with other settings finds them present.
        let jumps = vec![
            rule(
                "PREROUTING",
                &["-p", "tcp"],
                &format!("inbound tcp to {INBOUND_CHAIN}"),
                &["-j", INBOUND_CHAIN],
            ),
            rule(
                "OUTPUT",
                &["-p", "tcp"],
                &format!("outbound tcp to {OUTBOUND_CHAIN}"),
                &["-j", OUTBOUND_CHAIN],
            ),
        ];

        RuleSet {
            chains: vec![
                INBOUND_CHAIN,
                INBOUND_REDIRECT_CHAIN,
                OUTBOUND_CHAIN,
                OUTBOUND_REDIRECT_CHAIN,
            ],
            rules,
            jumps,
        }
    }
}

/// The prefix of every rule's comment: who added it.
pub const COMMENT_PREFIX: &str = "sidecar-proxy: ";

fn rule(chain: &'static str, matches: &[&str], why: &str, target: &[&str]) -> Rule {
    let comment = format!("{COMMENT_PREFIX}{why}");
    let spec = matches
        .iter()
        .copied()
        .chain(["-m", "comment", "--comment", &comment])
        .chain(target.iter().copied())
        .map(str::to_owned)
        .collect();
    Rule { chain, spec }
}

fn tcp_dport(ports: &str) -> [&str; 4] {
    ["-p", "tcp", "--dport", ports]
}

/// One RETURN per entry, in the order the user listed them: the comment names the entry as written.
fn ignored(chain: &'static str, ports: &PortList, setting: &str) -> Vec<Rule> {
    ports
        .ranges()
        .iter()
        .map(|range| {
            rule(
                chain,
                &tcp_dport(&range.to_iptables()),
                &format!("{setting} {range}"),
                &["-j", "RETURN"],
            )
        })
        .collect()
}
