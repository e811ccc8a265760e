//! The spec's configuration table, over the pure model: every valid type × protocol pair and the spec's
//! defaults and examples give the listeners they describe; every invalid value is refused with one exact
//! line naming the setting as the user wrote it (flag, environment variable or annotation).

use rstest::rstest;
use sidecar_proxy::cli::Invocation;
use sidecar_proxy::config::{
    parse_annotations_file, InboundProtocol, OutboundProtocol, ProtocolSetting, ProxyConfig,
    ProxyType, RawSettings, ReverseTarget, Setting, Source,
};

use InboundProtocol as In;
use OutboundProtocol as Out;
use Setting::*;

/// Settings all given through one source.
fn settings(source: Source, pairs: &[(Setting, &str)]) -> RawSettings {
    let mut raw = RawSettings::default();
    for (setting, value) in pairs {
        raw.offer(*setting, *value, source);
    }
    raw
}

fn config(source: Source, pairs: &[(Setting, &str)]) -> ProxyConfig {
    ProxyConfig::from_settings(&settings(source, pairs))
        .unwrap_or_else(|e| panic!("{pairs:?} from {source:?} should be valid, got: {e}"))
}

fn error(source: Source, pairs: &[(Setting, &str)]) -> String {
    match ProxyConfig::from_settings(&settings(source, pairs)) {
        Ok(config) => panic!("{pairs:?} from {source:?} should be refused, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// How the user wrote a setting, spelled out independently of the library: `--proxy-port`,
/// `PROXY_PORT`, `sidecar.speedscale.com/proxy-port`.
fn written(name: &str, source: Source) -> String {
    match source {
        Source::Flag => format!("--{name}"),
        Source::Env => name.to_ascii_uppercase().replace('-', "_"),
        Source::Annotation => format!("sidecar.speedscale.com/{name}"),
        Source::Default => format!("{name} (default)"),
    }
}

/// Fills `{proxy-type}`-style placeholders with the setting names for `source`.
fn spell(template: &str, source: Source) -> String {
    let mut out = template.to_owned();
    for name in [
        "proxy-type",
        "proxy-protocol",
        "proxy-host",
        "proxy-port",
        "proxy-in-port",
        "proxy-out-port",
    ] {
        out = out.replace(&format!("{{{name}}}"), &written(name, source));
    }
    assert!(!out.contains('{'), "unfilled placeholder in {template}");
    out
}

fn app(host: &str, port: u16) -> ReverseTarget {
    ReverseTarget {
        host: host.to_owned(),
        port,
    }
}

// ---------------------------------------------------------------------------------------------------
// Valid rows
// ---------------------------------------------------------------------------------------------------

#[rstest]
#[case::reverse_tcp(
    "reverse",
    "tcp",
    ProxyType::Reverse,
    ProtocolSetting::Tcp,
    Some(In::Tcp),
    None
)]
#[case::reverse_http(
    "reverse",
    "http",
    ProxyType::Reverse,
    ProtocolSetting::Http,
    Some(In::Http),
    None
)]
#[case::reverse_socks(
    "reverse",
    "socks",
    ProxyType::Reverse,
    ProtocolSetting::Socks,
    Some(In::Socks),
    None
)]
#[case::forward_http(
    "forward",
    "http",
    ProxyType::Forward,
    ProtocolSetting::Http,
    None,
    Some(Out::Http)
)]
#[case::forward_socks(
    "forward",
    "socks",
    ProxyType::Forward,
    ProtocolSetting::Socks,
    None,
    Some(Out::Socks)
)]
#[case::dual_http(
    "dual",
    "http",
    ProxyType::Dual,
    ProtocolSetting::Http,
    Some(In::Http),
    Some(Out::Http)
)]
#[case::dual_socks(
    "dual",
    "socks",
    ProxyType::Dual,
    ProtocolSetting::Socks,
    Some(In::Socks),
    Some(Out::Socks)
)]
#[case::dual_tcp_http(
    "dual",
    "tcp:http",
    ProxyType::Dual,
    ProtocolSetting::TcpHttp,
    Some(In::Tcp),
    Some(Out::Http)
)]
#[case::dual_tcp_socks(
    "dual",
    "tcp:socks",
    ProxyType::Dual,
    ProtocolSetting::TcpSocks,
    Some(In::Tcp),
    Some(Out::Socks)
)]
#[case::transparent_http(
    "transparent",
    "http",
    ProxyType::Transparent,
    ProtocolSetting::Http,
    None,
    None
)]
#[case::transparent_socks(
    "transparent",
    "socks",
    ProxyType::Transparent,
    ProtocolSetting::Socks,
    None,
    None
)]
fn every_type_and_protocol_the_spec_allows(
    #[case] type_word: &str,
    #[case] protocol_word: &str,
    #[case] proxy_type: ProxyType,
    #[case] protocol: ProtocolSetting,
    #[case] inbound: Option<InboundProtocol>,
    #[case] outbound: Option<OutboundProtocol>,
    #[values(Source::Flag, Source::Env, Source::Annotation)] source: Source,
) {
    let got = config(
        source,
        &[(ProxyType, type_word), (ProxyProtocol, protocol_word)],
    );
    assert_eq!(
        got,
        ProxyConfig {
            proxy_type,
            protocol,
            app: app("localhost", 80),
            in_port: 4143,
            out_port: 4140,
        }
    );
    assert_eq!(got.inbound(), inbound);
    assert_eq!(got.outbound(), outbound);
}

#[test]
fn nothing_set_means_transparent_http_to_localhost_80_on_4143_and_4140() {
    let got = ProxyConfig::from_settings(&RawSettings::default()).unwrap();
    assert_eq!(
        got,
        ProxyConfig {
            proxy_type: ProxyType::Transparent,
            protocol: ProtocolSetting::Http,
            app: app("localhost", 80),
            in_port: 4143,
            out_port: 4140,
        }
    );
    assert_eq!(got.inbound(), None);
    assert_eq!(got.outbound(), None);
}

#[rstest]
#[case::reverse_defaults_to_http("reverse", Some(In::Http), None)]
#[case::forward_defaults_to_http("forward", None, Some(Out::Http))]
#[case::dual_defaults_to_http("dual", Some(In::Http), Some(Out::Http))]
fn protocol_defaults_to_http(
    #[case] type_word: &str,
    #[case] inbound: Option<InboundProtocol>,
    #[case] outbound: Option<OutboundProtocol>,
) {
    let got = config(Source::Flag, &[(ProxyType, type_word)]);
    assert_eq!(got.protocol, ProtocolSetting::Http);
    assert_eq!((got.inbound(), got.outbound()), (inbound, outbound));
    assert_eq!(
        (got.app.clone(), got.in_port, got.out_port),
        (app("localhost", 80), 4143, 4140)
    );
}

#[rstest]
#[case::name("app", "app")]
#[case::fqdn("app.default.svc.cluster.local", "app.default.svc.cluster.local")]
#[case::ipv4("10.0.0.5", "10.0.0.5")]
#[case::ipv6("fd00::5", "fd00::5")]
#[case::bracketed_ipv6("[fd00::5]", "fd00::5")]
#[case::surrounding_spaces(" app ", "app")]
fn reverse_target_host(#[case] written: &str, #[case] stored: &str) {
    let got = config(
        Source::Annotation,
        &[
            (ProxyType, "reverse"),
            (ProxyProtocol, "tcp"),
            (ProxyHost, written),
            (ProxyPort, "8080"),
        ],
    );
    assert_eq!(got.app, app(stored, 8080));
}

#[rstest]
#[case::lowest("1", 1)]
#[case::highest("65535", 65535)]
#[case::leading_zero("08080", 8080)]
#[case::surrounding_spaces(" 8080 ", 8080)]
fn port_values(#[case] written: &str, #[case] port: u16) {
    let got = config(
        Source::Env,
        &[
            (ProxyType, "dual"),
            (ProxyPort, written),
            (ProxyInPort, "10000"),
            (ProxyOutPort, "10001"),
        ],
    );
    assert_eq!(
        (got.app.port, got.in_port, got.out_port),
        (port, 10000, 10001)
    );
    let got = config(
        Source::Env,
        &[
            (ProxyType, "reverse"),
            (ProxyPort, "9000"),
            (ProxyInPort, written),
        ],
    );
    assert_eq!(got.in_port, port);
    let got = config(
        Source::Env,
        &[(ProxyType, "forward"), (ProxyOutPort, written)],
    );
    assert_eq!(got.out_port, port);
}

#[test]
fn ports_only_clash_when_both_listeners_exist() {
    // A reverse proxy has no outbound listener, a forward proxy no inbound one.
    let reverse = config(
        Source::Flag,
        &[(ProxyType, "reverse"), (ProxyInPort, "4140")],
    );
    assert_eq!((reverse.in_port, reverse.out_port), (4140, 4140));
    let forward = config(
        Source::Flag,
        &[(ProxyType, "forward"), (ProxyOutPort, "4143")],
    );
    assert_eq!((forward.in_port, forward.out_port), (4143, 4143));
}

#[test]
fn the_app_port_may_equal_the_in_port_on_another_host_or_without_an_inbound_listener() {
    let remote = config(
        Source::Flag,
        &[
            (ProxyType, "reverse"),
            (ProxyHost, "app.default.svc"),
            (ProxyPort, "4143"),
        ],
    );
    assert_eq!(remote.app, app("app.default.svc", 4143));
    let forward = config(Source::Flag, &[(ProxyType, "forward"), (ProxyPort, "4143")]);
    assert_eq!(listeners(&forward), (None, Some(Out::Http)));
    assert_eq!(forward.app, app("localhost", 4143));
}

// ---------------------------------------------------------------------------------------------------
// The spec's four examples, as pod annotations and as the downward-API file the sidecar reads
// ---------------------------------------------------------------------------------------------------

const EXAMPLE_DUAL_TCP_HTTP: &[(&str, &str)] = &[
    ("sidecar.speedscale.com/inject", "true"),
    ("sidecar.speedscale.com/proxy-type", "dual"),
    ("sidecar.speedscale.com/proxy-protocol", "tcp:http"),
    ("sidecar.speedscale.com/proxy-port", "8080"),
];
const EXAMPLE_FORWARD_SOCKS: &[(&str, &str)] = &[
    ("sidecar.speedscale.com/inject", "true"),
    ("sidecar.speedscale.com/proxy-type", "forward"),
    ("sidecar.speedscale.com/proxy-protocol", "socks"),
];
const EXAMPLE_REVERSE_HTTP: &[(&str, &str)] = &[
    ("sidecar.speedscale.com/inject", "true"),
    ("sidecar.speedscale.com/proxy-type", "reverse"),
    ("sidecar.speedscale.com/proxy-protocol", "http"),
    ("sidecar.speedscale.com/proxy-port", "8888"),
];
const EXAMPLE_DUAL_CUSTOM_PORTS: &[(&str, &str)] = &[
    ("sidecar.speedscale.com/inject", "true"),
    ("sidecar.speedscale.com/proxy-type", "dual"),
    ("sidecar.speedscale.com/proxy-protocol", "tcp:http"),
    ("sidecar.speedscale.com/proxy-port", "8080"),
    ("sidecar.speedscale.com/proxy-in-port", "10000"),
    ("sidecar.speedscale.com/proxy-out-port", "10001"),
];

fn example_cases() -> Vec<(&'static [(&'static str, &'static str)], ProxyConfig)> {
    vec![
        (
            EXAMPLE_DUAL_TCP_HTTP,
            ProxyConfig {
                proxy_type: ProxyType::Dual,
                protocol: ProtocolSetting::TcpHttp,
                app: app("localhost", 8080),
                in_port: 4143,
                out_port: 4140,
            },
        ),
        (
            EXAMPLE_FORWARD_SOCKS,
            ProxyConfig {
                proxy_type: ProxyType::Forward,
                protocol: ProtocolSetting::Socks,
                app: app("localhost", 80),
                in_port: 4143,
                out_port: 4140,
            },
        ),
        (
            EXAMPLE_REVERSE_HTTP,
            ProxyConfig {
                proxy_type: ProxyType::Reverse,
                protocol: ProtocolSetting::Http,
                app: app("localhost", 8888),
                in_port: 4143,
                out_port: 4140,
            },
        ),
        (
            EXAMPLE_DUAL_CUSTOM_PORTS,
            ProxyConfig {
                proxy_type: ProxyType::Dual,
                protocol: ProtocolSetting::TcpHttp,
                app: app("localhost", 8080),
                in_port: 10000,
                out_port: 10001,
            },
        ),
    ]
}

/// What the examples promise, listener by listener.
fn listeners(config: &ProxyConfig) -> (Option<InboundProtocol>, Option<OutboundProtocol>) {
    (config.inbound(), config.outbound())
}

#[rstest]
#[case::dual_tcp_http(0, (Some(In::Tcp), Some(Out::Http)))]
#[case::forward_socks(1, (None, Some(Out::Socks)))]
#[case::reverse_http(2, (Some(In::Http), None))]
#[case::dual_custom_ports(3, (Some(In::Tcp), Some(Out::Http)))]
fn spec_examples_as_annotations(
    #[case] index: usize,
    #[case] expected: (Option<InboundProtocol>, Option<OutboundProtocol>),
) {
    let (annotations, want) = example_cases().swap_remove(index);
    let raw = RawSettings::from_annotations(annotations.iter().copied());
    let got = ProxyConfig::from_settings(&raw).unwrap();
    assert_eq!(got, want);
    assert_eq!(listeners(&got), expected);

    // The same pod seen through the downward API, next to annotations the sidecar does not own.
    let mut file = String::from(
        "kubernetes.io/config.seen=\"2026-11-26T10:00:00.000000000Z\"\n\
         kubectl.kubernetes.io/last-applied-configuration=\"{\\\"kind\\\":\\\"Pod\\\"}\\n\"\n",
    );
    for (key, value) in annotations {
        file.push_str(&format!("{key}=\"{value}\"\n"));
    }
    let from_file = parse_annotations_file(&file).unwrap();
    assert_eq!(from_file, raw);
    assert_eq!(ProxyConfig::from_settings(&from_file).unwrap(), want);
}

// ---------------------------------------------------------------------------------------------------
// Invalid rows: one exact line each, naming the setting as written, the value, and what is allowed
// ---------------------------------------------------------------------------------------------------

const FORWARD_TCP: &str = "invalid {proxy-protocol} \"tcp\" for {proxy-type} \"forward\": a forward proxy serves many destinations and needs a proxy protocol (tcp applies only to reverse proxies); allowed for forward: http, socks";

#[rstest]
#[case::tcp_for_forward(&[(ProxyType, "forward"), (ProxyProtocol, "tcp")], FORWARD_TCP)]
#[case::tcp_for_dual(
    &[(ProxyType, "dual"), (ProxyProtocol, "tcp")],
    "invalid {proxy-protocol} \"tcp\" for {proxy-type} \"dual\": tcp applies only to reverse proxies; allowed for dual: http, socks, tcp:http, tcp:socks"
)]
#[case::tcp_for_transparent(
    &[(ProxyType, "transparent"), (ProxyProtocol, "tcp")],
    "invalid {proxy-protocol} \"tcp\" for {proxy-type} \"transparent\": tcp applies only to reverse proxies; allowed for transparent: http, socks"
)]
#[case::tcp_http_for_reverse(
    &[(ProxyType, "reverse"), (ProxyProtocol, "tcp:http")],
    "invalid {proxy-protocol} \"tcp:http\" for {proxy-type} \"reverse\": combined protocols apply only to dual proxies; allowed for reverse: tcp, http, socks"
)]
#[case::tcp_socks_for_reverse(
    &[(ProxyType, "reverse"), (ProxyProtocol, "tcp:socks")],
    "invalid {proxy-protocol} \"tcp:socks\" for {proxy-type} \"reverse\": combined protocols apply only to dual proxies; allowed for reverse: tcp, http, socks"
)]
#[case::tcp_http_for_forward(
    &[(ProxyType, "forward"), (ProxyProtocol, "tcp:http")],
    "invalid {proxy-protocol} \"tcp:http\" for {proxy-type} \"forward\": combined protocols apply only to dual proxies; allowed for forward: http, socks"
)]
#[case::tcp_socks_for_forward(
    &[(ProxyType, "forward"), (ProxyProtocol, "tcp:socks")],
    "invalid {proxy-protocol} \"tcp:socks\" for {proxy-type} \"forward\": combined protocols apply only to dual proxies; allowed for forward: http, socks"
)]
#[case::unknown_type(
    &[(ProxyType, "inline")],
    "invalid {proxy-type} \"inline\": allowed values are transparent, reverse, forward, dual"
)]
#[case::two_types(
    &[(ProxyType, "reverse,forward")],
    "invalid {proxy-type} \"reverse,forward\": allowed values are transparent, reverse, forward, dual"
)]
#[case::empty_type(
    &[(ProxyType, "")],
    "invalid {proxy-type} \"\": allowed values are transparent, reverse, forward, dual"
)]
#[case::unknown_protocol(
    &[(ProxyType, "forward"), (ProxyProtocol, "socks5")],
    "invalid {proxy-protocol} \"socks5\": allowed values are tcp, http, socks, tcp:http, tcp:socks"
)]
#[case::unknown_combination(
    &[(ProxyType, "dual"), (ProxyProtocol, "http:tcp")],
    "invalid {proxy-protocol} \"http:tcp\": allowed values are tcp, http, socks, tcp:http, tcp:socks"
)]
#[case::empty_protocol(
    &[(ProxyType, "reverse"), (ProxyProtocol, "")],
    "invalid {proxy-protocol} \"\": allowed values are tcp, http, socks, tcp:http, tcp:socks"
)]
#[case::in_port_equals_out_port_in_dual(
    &[(ProxyType, "dual"), (ProxyInPort, "5000"), (ProxyOutPort, "5000")],
    "invalid {proxy-out-port} \"5000\": {proxy-in-port} is also 5000, and the inbound and outbound listeners need different ports"
)]
#[case::app_is_the_sidecar_default_in_port(
    &[(ProxyType, "reverse"), (ProxyProtocol, "tcp"), (ProxyPort, "4143")],
    "invalid {proxy-port} \"4143\": localhost:4143 is the sidecar's own inbound port (proxy-in-port (default)), so requests would loop back into the sidecar; point it at the app's port"
)]
#[case::app_is_the_sidecar_explicit_in_port(
    &[(ProxyType, "dual"), (ProxyProtocol, "tcp:http"), (ProxyHost, "127.0.0.1"), (ProxyPort, "9000"), (ProxyInPort, "9000")],
    "invalid {proxy-port} \"9000\": 127.0.0.1:9000 is the sidecar's own inbound port ({proxy-in-port}), so requests would loop back into the sidecar; point it at the app's port"
)]
#[case::app_is_the_sidecar_ipv6_loopback(
    &[(ProxyType, "reverse"), (ProxyHost, "::1"), (ProxyPort, "4143")],
    "invalid {proxy-port} \"4143\": [::1]:4143 is the sidecar's own inbound port (proxy-in-port (default)), so requests would loop back into the sidecar; point it at the app's port"
)]
#[case::host_with_scheme(
    &[(ProxyType, "reverse"), (ProxyHost, "http://app")],
    "invalid {proxy-host} \"http://app\": allowed values are a host name or an IP address, without scheme, port or path"
)]
#[case::host_with_port(
    &[(ProxyType, "reverse"), (ProxyHost, "app:80")],
    "invalid {proxy-host} \"app:80\": allowed values are a host name or an IP address, without scheme, port or path"
)]
#[case::host_with_space(
    &[(ProxyType, "reverse"), (ProxyHost, "a b")],
    "invalid {proxy-host} \"a b\": allowed values are a host name or an IP address, without scheme, port or path"
)]
#[case::host_with_path(
    &[(ProxyType, "reverse"), (ProxyHost, "app/api")],
    "invalid {proxy-host} \"app/api\": allowed values are a host name or an IP address, without scheme, port or path"
)]
#[case::empty_host(
    &[(ProxyType, "reverse"), (ProxyHost, "")],
    "invalid {proxy-host} \"\": allowed values are a host name or an IP address, without scheme, port or path"
)]
fn refused_with_one_exact_line(
    #[case] pairs: &[(Setting, &str)],
    #[case] template: &str,
    #[values(Source::Flag, Source::Env, Source::Annotation)] source: Source,
) {
    let message = error(source, pairs);
    assert_eq!(message, spell(template, source));
    assert!(!message.contains('\n'), "{message:?}");
}

#[rstest]
fn bad_ports_are_refused_for_every_port_setting(
    #[values("0", "65536", "-1", "80a", "", "+80", "0x50", "80.0", "99999999999")] value: &str,
    #[values(ProxyPort, ProxyInPort, ProxyOutPort)] setting: Setting,
    #[values(Source::Flag, Source::Env, Source::Annotation)] source: Source,
) {
    let message = error(source, &[(ProxyType, "dual"), (setting, value)]);
    assert_eq!(
        message,
        format!(
            "invalid {} \"{value}\": allowed values are port numbers 1-65535",
            written(setting.name(), source)
        )
    );
}

#[test]
fn messages_name_each_setting_by_its_own_source() {
    let mut raw = RawSettings::default();
    raw.offer(ProxyType, "forward", Source::Annotation);
    raw.offer(ProxyProtocol, "tcp", Source::Env);
    assert_eq!(
        ProxyConfig::from_settings(&raw).unwrap_err().to_string(),
        "invalid PROXY_PROTOCOL \"tcp\" for sidecar.speedscale.com/proxy-type \"forward\": a forward proxy serves many destinations and needs a proxy protocol (tcp applies only to reverse proxies); allowed for forward: http, socks"
    );

    // The default type is named as the default, not as something the user wrote.
    assert_eq!(
        error(Source::Flag, &[(ProxyProtocol, "tcp")]),
        "invalid --proxy-protocol \"tcp\" for proxy-type (default) \"transparent\": tcp applies only to reverse proxies; allowed for transparent: http, socks"
    );
}

#[test]
fn a_port_clash_blames_the_port_the_user_set() {
    // Only the in-port was set; it lands on the default out-port.
    assert_eq!(
        error(Source::Flag, &[(ProxyType, "dual"), (ProxyInPort, "4140")]),
        "invalid --proxy-in-port \"4140\": proxy-out-port (default) is also 4140, and the inbound and outbound listeners need different ports"
    );
    // Only the out-port was set.
    assert_eq!(
        error(
            Source::Annotation,
            &[(ProxyType, "dual"), (ProxyOutPort, "4143")]
        ),
        "invalid sidecar.speedscale.com/proxy-out-port \"4143\": proxy-in-port (default) is also 4143, and the inbound and outbound listeners need different ports"
    );
}

// ---------------------------------------------------------------------------------------------------
// Precedence: flag, then environment, then annotation, then default
// ---------------------------------------------------------------------------------------------------

#[test]
fn flag_beats_env_beats_annotation() {
    let layered = |layers: &[(Source, &str)]| {
        let mut raw = RawSettings::default();
        raw.offer(ProxyType, "reverse", Source::Annotation);
        for (source, port) in layers {
            raw.offer(ProxyPort, *port, *source);
        }
        ProxyConfig::from_settings(&raw).unwrap().app.port
    };
    assert_eq!(
        layered(&[
            (Source::Annotation, "1001"),
            (Source::Env, "1002"),
            (Source::Flag, "1003")
        ]),
        1003
    );
    assert_eq!(
        layered(&[
            (Source::Flag, "1003"),
            (Source::Env, "1002"),
            (Source::Annotation, "1001")
        ]),
        1003
    );
    assert_eq!(
        layered(&[(Source::Env, "1002"), (Source::Annotation, "1001")]),
        1002
    );
    assert_eq!(
        layered(&[(Source::Annotation, "1001"), (Source::Env, "1002")]),
        1002
    );
    assert_eq!(layered(&[(Source::Annotation, "1001")]), 1001);
    assert_eq!(layered(&[]), 80);
}

#[test]
fn annotations_fill_only_what_flags_and_env_left_unset() {
    let mut raw = RawSettings::default();
    raw.offer(ProxyProtocol, "tcp:socks", Source::Flag);
    raw.offer(ProxyInPort, "10000", Source::Env);
    raw.merge(&RawSettings::from_annotations(
        EXAMPLE_DUAL_CUSTOM_PORTS.iter().copied(),
    ));
    let got = ProxyConfig::from_settings(&raw).unwrap();
    assert_eq!(
        got,
        ProxyConfig {
            proxy_type: ProxyType::Dual,
            protocol: ProtocolSetting::TcpSocks,
            app: app("localhost", 8080),
            in_port: 10000,
            out_port: 10001,
        }
    );
    assert_eq!(listeners(&got), (Some(In::Tcp), Some(Out::Socks)));
}

#[test]
fn a_bad_value_that_is_overridden_does_not_matter() {
    let mut raw = RawSettings::default();
    raw.offer(ProxyType, "reverse", Source::Flag);
    raw.offer(ProxyPort, "8080", Source::Flag);
    raw.offer(ProxyPort, "0", Source::Env);
    raw.offer(ProxyPort, "eighty", Source::Annotation);
    assert_eq!(ProxyConfig::from_settings(&raw).unwrap().app.port, 8080);
}

#[test]
fn the_error_names_the_source_that_won() {
    let mut raw = RawSettings::default();
    raw.offer(ProxyType, "reverse", Source::Annotation);
    raw.offer(ProxyPort, "8080", Source::Annotation);
    raw.offer(ProxyPort, "0", Source::Env);
    assert_eq!(
        ProxyConfig::from_settings(&raw).unwrap_err().to_string(),
        "invalid PROXY_PORT \"0\": allowed values are port numbers 1-65535"
    );
}

/// The command line with an annotations file: flags win, the file fills the rest.
#[test]
fn command_line_flags_beat_the_annotations_file() {
    let path = std::env::temp_dir().join(format!(
        "config-table-annotations-{}.txt",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "sidecar.speedscale.com/inject=\"true\"\n\
         sidecar.speedscale.com/proxy-type=\"dual\"\n\
         sidecar.speedscale.com/proxy-protocol=\"tcp:http\"\n\
         sidecar.speedscale.com/proxy-port=\"8080\"\n\
         sidecar.speedscale.com/proxy-out-port=\"10001\"\n",
    )
    .unwrap();
    let invocation = Invocation::parse_from([
        "sidecar-proxy".as_ref(),
        "--proxy-port".as_ref(),
        "9090".as_ref(),
        "--annotations".as_ref(),
        path.as_os_str(),
    ])
    .unwrap();
    let got = invocation.config();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        got.unwrap(),
        ProxyConfig {
            proxy_type: ProxyType::Dual,
            protocol: ProtocolSetting::TcpHttp,
            app: app("localhost", 9090),
            in_port: 4143,
            out_port: 10001,
        }
    );
}

#[rstest]
#[case::unquoted(
    "sidecar.speedscale.com/proxy-type=\"dual\"\nsidecar.speedscale.com/proxy-port=8080\n",
    "annotations file line 2: value is not a double-quoted string; expected key=\"value\" as the Kubernetes downward API writes it"
)]
#[case::yaml_style(
    "sidecar.speedscale.com/proxy-type: \"dual\"\n",
    "annotations file line 1: no '=' found; expected key=\"value\" as the Kubernetes downward API writes it"
)]
fn a_malformed_annotations_file_names_the_line(#[case] text: &str, #[case] message: &str) {
    assert_eq!(
        parse_annotations_file(text).unwrap_err().to_string(),
        message
    );
}
