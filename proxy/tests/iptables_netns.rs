//! `init-iptables` for real, in network namespaces these tests create and always delete: the rules land in
//! the nat table exactly once each, a re-run leaves the ruleset byte-identical, `--dry-run` changes
//! nothing, and `auto` stays on the backend that already holds rules. Needs root (as CI runs) and
//! iproute2 + iptables; without them the tests fail and say so rather than skip.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sidecar_proxy::config::{RawSettings, RedirectSettings, Setting, Source};
use sidecar_proxy::iptables::rules::{DEFAULT_ADMIN_PORT, DEFAULT_PROXY_UID};
use sidecar_proxy::iptables::{RuleInputs, RuleSet};

// Only the environment helper: the rest of `support` (the in-process proxy) is not needed here.
#[path = "support/env.rs"]
mod env;

use env::remove_proxy_vars;

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// A network namespace of the test's own, deleted when dropped (also when the test panics).
struct Netns(String);

impl Netns {
    fn new(purpose: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sidecar-ipt-{}-{}-{purpose}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let output = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run `ip netns add` ({e}): these tests need iproute2 (apt-get install -y iproute2)")
            });
        assert!(
            output.status.success(),
            "`ip netns add {name}` failed: {}; these tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN), as CI runs them",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Netns(name)
    }

    /// Runs a command inside the namespace.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]).args(args);
        remove_proxy_vars(&mut command);
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.0))
    }

    fn init_iptables(&self, args: &[&str]) -> Output {
        let mut all = vec!["init-iptables"];
        all.extend_from_slice(args);
        let output = self.exec(BIN, &all);
        assert!(
            output.status.success(),
            "init-iptables {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// The nat table as `tool` saves it, without its timestamped `#` lines.
    fn save(&self, tool: &str) -> String {
        let output = self.exec(tool, &["-t", "nat"]);
        assert!(
            output.status.success(),
            "{tool} failed: {}; apt-get install -y iptables",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| format!("{line}\n"))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn rule_set(pairs: &[(Setting, &str)]) -> RuleSet {
    let mut raw = RawSettings::default();
    for (setting, value) in pairs {
        raw.offer(*setting, *value, Source::Flag);
    }
    RuleSet::new(&RuleInputs {
        redirect: RedirectSettings::from_settings(&raw).unwrap(),
        proxy_uid: DEFAULT_PROXY_UID,
        admin_port: DEFAULT_ADMIN_PORT,
    })
}

/// Every rule and jump of `rules` appears exactly once, in its chain, in order; nothing else jumps to or
/// sits in our chains.
fn assert_rules_once(saved: &str, rules: &RuleSet) {
    let lines: Vec<&str> = saved.lines().collect();
    let mut last_in_chain = std::collections::HashMap::new();
    for rule in rules.rules.iter().chain(&rules.jumps) {
        let at = rule.spec.iter().position(|a| a == "--comment").unwrap();
        let comment = format!("--comment \"{}\"", rule.spec[at + 1]);
        let target = rule.spec[at + 2..].join(" ");
        let found: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(&comment))
            .collect();
        assert_eq!(found.len(), 1, "{comment} should appear once in:\n{saved}");
        let line = lines[found[0]];
        assert!(
            line.starts_with(&format!("-A {} ", rule.chain)) && line.ends_with(&target),
            "{line:?} should be in {} and end with {target:?}",
            rule.chain
        );
        if let Some(previous) = last_in_chain.insert(rule.chain, found[0]) {
            assert!(
                previous < found[0],
                "rules of {} out of order:\n{saved}",
                rule.chain
            );
        }
    }
    let ours = lines
        .iter()
        .filter(|l| l.starts_with("-A SPEEDSCALE_") || l.contains("-j SPEEDSCALE_"))
        .count();
    assert_eq!(ours, rules.rules.len() + rules.jumps.len(), "{saved}");
    for chain in &rules.chains {
        assert!(
            saved.contains(&format!(":{chain} - ")),
            "{chain} missing:\n{saved}"
        );
    }
}

#[test]
fn auto_backend_applies_once_reruns_identically_and_dry_run_changes_nothing() {
    let netns = Netns::new("auto");
    let args = [
        "--ignore-inbound-ports",
        "22,8000-8100",
        "--ignore-outbound-ports",
        "5432",
    ];
    let rules = rule_set(&[
        (Setting::IgnoreInboundPorts, "22,8000-8100"),
        (Setting::IgnoreOutboundPorts, "5432"),
    ]);

    // A new namespace has no rules in either backend, so auto runs the system's iptables.
    let first = netns.init_iptables(&args);
    let log = String::from_utf8_lossy(&first.stderr);
    assert!(
        log.contains("IPv4 rules in place with iptables (")
            && log.contains("IPv6 rules in place with ip6tables ("),
        "{log}"
    );
    let v4 = netns.save("iptables-save");
    let v6 = netns.save("ip6tables-save");
    assert_rules_once(&v4, &rules);
    assert_rules_once(&v6, &rules);

    // Now the rules are there, auto finds them (iptables is iptables-nft on Debian 12) and converges.
    netns.init_iptables(&args);
    assert_eq!(
        netns.save("iptables-save"),
        v4,
        "a re-run changed the IPv4 rules"
    );
    assert_eq!(
        netns.save("ip6tables-save"),
        v6,
        "a re-run changed the IPv6 rules"
    );

    // A dry run with other settings prints them and changes nothing.
    let dry = netns.init_iptables(&["--dry-run", "--ignore-outbound-ports", "25"]);
    let printed = String::from_utf8(dry.stdout).unwrap();
    assert!(printed.contains("ignore-outbound-ports 25"), "{printed}");
    assert_eq!(
        netns.save("iptables-save"),
        v4,
        "--dry-run changed the rules"
    );
    assert_eq!(
        netns.save("ip6tables-save"),
        v6,
        "--dry-run changed the rules"
    );

    // A re-run with other settings replaces our rules rather than adding to them.
    netns.init_iptables(&["--ignore-outbound-ports", "25"]);
    let other = rule_set(&[(Setting::IgnoreOutboundPorts, "25")]);
    assert_rules_once(&netns.save("iptables-save"), &other);
    assert_rules_once(&netns.save("ip6tables-save"), &other);
}

#[test]
fn legacy_backend_converges_and_auto_stays_on_it() {
    let netns = Netns::new("legacy");
    let rules = rule_set(&[]);

    netns.init_iptables(&["--iptables-backend", "legacy"]);
    let v4 = netns.save("iptables-legacy-save");
    assert_rules_once(&v4, &rules);
    assert_rules_once(&netns.save("ip6tables-legacy-save"), &rules);

    // auto now sees rules only in legacy and must not start a second ruleset in nf_tables.
    let rerun = netns.init_iptables(&[]);
    let log = String::from_utf8_lossy(&rerun.stderr);
    assert!(log.contains("backend: legacy (auto: "), "{log}");
    assert_eq!(
        netns.save("iptables-legacy-save"),
        v4,
        "a re-run changed the rules"
    );
    let nft = netns.save("iptables-nft-save");
    assert!(
        !nft.contains("SPEEDSCALE_"),
        "auto wrote nf_tables rules too:\n{nft}"
    );
}
