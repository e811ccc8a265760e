//! Golden rule sets: the exact iptables commands `init-iptables` runs for the defaults and for each option,
//! compared with files under tests/golden/iptables/. `UPDATE_GOLDEN=1 cargo test --test iptables_rules`
//! rewrites the files; review the diff like code.

use std::path::PathBuf;

use rstest::rstest;
use sidecar_proxy::config::{RawSettings, RedirectSettings, Setting, Source};
use sidecar_proxy::iptables::rules::{DEFAULT_ADMIN_PORT, DEFAULT_PROXY_UID};
use sidecar_proxy::iptables::script::{render, steps};
use sidecar_proxy::iptables::{RuleInputs, RuleSet};

use Setting::*;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/iptables")
        .join(format!("{name}.txt"))
}

/// Compares with the golden file, or rewrites it when UPDATE_GOLDEN=1.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn inputs(pairs: &[(Setting, &str)], proxy_uid: u32, admin_port: u16) -> RuleInputs {
    let mut raw = RawSettings::default();
    for (setting, value) in pairs {
        raw.offer(*setting, *value, Source::Flag);
    }
    RuleInputs {
        redirect: RedirectSettings::from_settings(&raw).unwrap(),
        proxy_uid,
        admin_port,
    }
}

fn script(inputs: &RuleInputs, binary: &str) -> String {
    render(&steps(&RuleSet::new(inputs)), binary)
}

#[rstest]
#[case::defaults("defaults", &[], DEFAULT_PROXY_UID, DEFAULT_ADMIN_PORT)]
#[case::in_port("proxy-in-port", &[(ProxyInPort, "15006")], DEFAULT_PROXY_UID, DEFAULT_ADMIN_PORT)]
#[case::out_port("proxy-out-port", &[(ProxyOutPort, "15001")], DEFAULT_PROXY_UID, DEFAULT_ADMIN_PORT)]
#[case::proxy_uid("proxy-uid", &[], 1337, DEFAULT_ADMIN_PORT)]
#[case::admin_port("admin-port", &[], DEFAULT_PROXY_UID, 9901)]
#[case::ignore_inbound(
    "ignore-inbound-ports",
    &[(IgnoreInboundPorts, " 22, 8000-8100 ,9090")],
    DEFAULT_PROXY_UID,
    DEFAULT_ADMIN_PORT
)]
#[case::ignore_outbound(
    "ignore-outbound-ports",
    &[(IgnoreOutboundPorts, "5432,6379-6380")],
    DEFAULT_PROXY_UID,
    DEFAULT_ADMIN_PORT
)]
#[case::everything(
    "everything",
    &[
        (ProxyInPort, "5143"),
        (ProxyOutPort, "5140"),
        (IgnoreInboundPorts, "22"),
        (IgnoreOutboundPorts, "443,8443-8444"),
    ],
    1000,
    5191
)]
fn rule_sets_match_their_golden_files(
    #[case] name: &str,
    #[case] pairs: &[(Setting, &str)],
    #[case] proxy_uid: u32,
    #[case] admin_port: u16,
) {
    assert_golden(
        name,
        &script(&inputs(pairs, proxy_uid, admin_port), "iptables"),
    );
}

#[test]
fn ipv6_gets_the_same_rules() {
    let inputs = inputs(&[(IgnoreInboundPorts, "22")], DEFAULT_PROXY_UID, 4191);
    let v4 = script(&inputs, "iptables");
    let v6 = script(&inputs, "ip6tables");
    assert_eq!(v6, v4.replace("iptables ", "ip6tables "));
}

#[test]
fn the_jumps_do_not_depend_on_the_settings() {
    // A re-run with other settings must find its jumps already there (`-C`), never add a second one.
    let defaults = RuleSet::new(&inputs(&[], DEFAULT_PROXY_UID, DEFAULT_ADMIN_PORT));
    let other = RuleSet::new(&inputs(
        &[(ProxyInPort, "1"), (IgnoreOutboundPorts, "2")],
        3,
        4,
    ));
    assert_eq!(defaults.jumps, other.jumps);
    assert_eq!(defaults.chains, other.chains);
}

#[test]
fn every_rule_has_a_distinct_comment_naming_the_sidecar() {
    let rules = RuleSet::new(&inputs(
        &[
            (IgnoreInboundPorts, "22,80"),
            (IgnoreOutboundPorts, "22,80"),
        ],
        DEFAULT_PROXY_UID,
        DEFAULT_ADMIN_PORT,
    ));
    let mut comments: Vec<(&str, String)> = rules
        .rules
        .iter()
        .chain(&rules.jumps)
        .map(|rule| {
            let at = rule.spec.iter().position(|a| a == "--comment").unwrap();
            (rule.chain, rule.spec[at + 1].clone())
        })
        .collect();
    assert!(comments
        .iter()
        .all(|(_, c)| c.starts_with("sidecar-proxy: ")));
    let count = comments.len();
    comments.sort();
    comments.dedup();
    assert_eq!(comments.len(), count, "{comments:?}");
}
