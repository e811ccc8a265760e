//! The ignore-port settings of transparent mode over the pure model: the rows config_table.rs has for the
//! spec's six settings, for `ignore-inbound-ports` and `ignore-outbound-ports`. Valid lists become the
//! ranges they describe; invalid ones are refused with one exact line naming the setting as the user wrote
//! it (flag, environment variable or annotation).

use rstest::rstest;
use sidecar_proxy::config::{
    parse_annotations_file, PortList, ProxyConfig, RawSettings, RedirectSettings, Setting, Source,
};

use Setting::*;

fn settings(source: Source, pairs: &[(Setting, &str)]) -> RawSettings {
    let mut raw = RawSettings::default();
    for (setting, value) in pairs {
        raw.offer(*setting, *value, source);
    }
    raw
}

fn ranges(list: &PortList) -> Vec<(u16, u16)> {
    list.ranges().iter().map(|r| (r.low(), r.high())).collect()
}

/// How the user wrote the setting, spelled out independently of the library.
fn written(name: &str, source: Source) -> String {
    match source {
        Source::Flag => format!("--{name}"),
        Source::Env => format!("PROXY_{}", name.to_ascii_uppercase().replace('-', "_")),
        Source::Annotation => format!("sidecar.speedscale.com/{name}"),
        Source::Default => format!("{name} (default)"),
    }
}

#[test]
fn the_settings_have_a_flag_an_env_var_and_an_annotation() {
    for (setting, name) in [
        (IgnoreInboundPorts, "ignore-inbound-ports"),
        (IgnoreOutboundPorts, "ignore-outbound-ports"),
    ] {
        assert_eq!(setting.name(), name);
        for source in [Source::Flag, Source::Env, Source::Annotation] {
            assert_eq!(setting.spelled(source).to_string(), written(name, source));
        }
        assert_eq!(
            Setting::from_annotation_key(&format!("sidecar.speedscale.com/{name}")),
            Some(setting)
        );
        assert!(Setting::ALL.contains(&setting));
    }
}

#[rstest]
#[case("", &[])]
#[case("   ", &[])]
#[case("22", &[(22, 22)])]
#[case("22,8000-8100", &[(22, 22), (8000, 8100)])]
#[case(" 22 , 8000 - 8100 ", &[(22, 22), (8000, 8100)])]
#[case("1-65535", &[(1, 65535)])]
#[case("443,443", &[(443, 443), (443, 443)])]
#[case("80-80", &[(80, 80)])]
fn valid_lists(
    #[case] written: &str,
    #[case] expected: &[(u16, u16)],
    #[values(IgnoreInboundPorts, IgnoreOutboundPorts)] setting: Setting,
    #[values(Source::Flag, Source::Env, Source::Annotation)] source: Source,
) {
    let got = RedirectSettings::from_settings(&settings(source, &[(setting, written)])).unwrap();
    let (this, other) = match setting {
        IgnoreInboundPorts => (&got.ignore_inbound, &got.ignore_outbound),
        _ => (&got.ignore_outbound, &got.ignore_inbound),
    };
    assert_eq!(ranges(this), expected);
    assert!(other.is_empty());
}

#[rstest]
#[case("ssh", "\"ssh\" is not a port number")]
#[case("22;80", "\"22;80\" is not a port number")]
#[case("+80", "\"+80\" is not a port number")]
#[case("0x50", "\"0x50\" is not a port number")]
#[case("-80", "\"\" is not a port number")]
#[case("80-", "\"\" is not a port number")]
#[case("0", "port 0 is outside 1-65535")]
#[case("65536", "port 65536 is outside 1-65535")]
#[case("0-10", "port 0 is outside 1-65535")]
#[case(
    "8100-8000",
    "range \"8100-8000\" has its low port above its high port"
)]
#[case("22,", "an entry between commas is empty")]
#[case(",22", "an entry between commas is empty")]
fn invalid_lists_are_refused_with_one_exact_line(
    #[case] value: &str,
    #[case] problem: &str,
    #[values(IgnoreInboundPorts, IgnoreOutboundPorts)] setting: Setting,
    #[values(Source::Flag, Source::Env, Source::Annotation)] source: Source,
) {
    let message = RedirectSettings::from_settings(&settings(source, &[(setting, value)]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        format!(
            "invalid {} \"{value}\": {problem}; allowed values are comma-separated ports 1-65535 and ranges low-high with low <= high, like 22,8000-8100 (empty for none)",
            written(setting.name(), source)
        )
    );
    assert!(!message.contains('\n'));
}

#[test]
fn the_annotations_file_carries_both_lists() {
    let raw = parse_annotations_file(
        "sidecar.speedscale.com/ignore-inbound-ports=\"22,8000-8100\"\n\
         sidecar.speedscale.com/ignore-outbound-ports=\"5432\"\n\
         sidecar.speedscale.com/proxy-in-port=\"5143\"\n",
    )
    .unwrap();
    let got = RedirectSettings::from_settings(&raw).unwrap();
    assert_eq!(ranges(&got.ignore_inbound), [(22, 22), (8000, 8100)]);
    assert_eq!(ranges(&got.ignore_outbound), [(5432, 5432)]);
    assert_eq!((got.in_port, got.out_port), (5143, 4140));
}

#[test]
fn a_flag_beats_the_annotation() {
    let mut raw = settings(Source::Annotation, &[(IgnoreOutboundPorts, "bad")]);
    raw.offer(IgnoreOutboundPorts, "25", Source::Flag);
    let got = RedirectSettings::from_settings(&raw).unwrap();
    assert_eq!(ranges(&got.ignore_outbound), [(25, 25)]);
}

#[test]
fn the_redirect_ports_are_validated_like_the_proxys() {
    let message = |pairs: &[(Setting, &str)]| {
        RedirectSettings::from_settings(&settings(Source::Env, pairs))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        message(&[(ProxyInPort, "70000")]),
        "invalid PROXY_IN_PORT \"70000\": allowed values are port numbers 1-65535"
    );
    assert_eq!(
        message(&[(ProxyInPort, "4140")]),
        "invalid PROXY_IN_PORT \"4140\": proxy-out-port (default) is also 4140, and the inbound and outbound listeners need different ports"
    );
}

#[test]
fn the_proxy_configuration_is_unaffected_by_the_lists() {
    // The lists configure the init container's rules, not the proxy's listeners.
    let raw = settings(
        Source::Annotation,
        &[(ProxyType, "dual"), (IgnoreInboundPorts, "22")],
    );
    let config = ProxyConfig::from_settings(&raw).unwrap();
    assert_eq!((config.in_port, config.out_port), (4143, 4140));
}
