//! The config model from outside: flags and their environment values, the downward-API annotations file,
//! and the ignore-port lists of transparent mode.
//!
//! - `config_flags`: the input is a command line, arguments separated by NUL bytes (`--proxy-type\0dual`),
//!   parsed by the proxy's own [`Invocation::parse_from`] and validated as `main` does. Environment values
//!   reach the same validation as flag values (clap hands both over as text), so this covers them.
//! - `annotations_file`: the input is an annotations file. It is parsed and validated, and, as a second
//!   use, written as one annotation's value the way the kubelet writes it (Go's `%q`), which must read back
//!   as the same text.
//! - `ignore_ports`: the input is a port list. It must parse exactly when a plain reading of the
//!   documented grammar does, print back to itself, and become iptables rules.
//!
//! A configuration that validates must validate again from its own values (nothing it accepted is
//! something it would refuse), and every refusal must render its message.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use sidecar_proxy::cli::{Command, Invocation};
use sidecar_proxy::config::{
    parse_annotations_file, HostPattern, PortList, ProxyConfig, ProxyType, RawSettings,
    RedirectSettings, Setting, Source, TlsOutSettings,
};
use sidecar_proxy::iptables::rules::{RuleInputs, RuleSet};
use sidecar_proxy::iptables::script::{render, steps};

pub fn config_flags(data: &[u8]) {
    let arguments = std::iter::once(OsString::from("sidecar-proxy")).chain(
        data.split(|&b| b == 0)
            .map(|arg| OsString::from_vec(arg.to_vec())),
    );
    let mut invocation = match Invocation::parse_from(arguments) {
        Ok(invocation) => invocation,
        Err(error) => {
            let _ = error.render().to_string();
            return;
        }
    };
    // The input may name files; a fuzz target reads none (and `run` would change the host's iptables).
    invocation.cli.annotations = None;
    match &mut invocation.cli.command {
        None => {}
        Some(Command::InitIptables(args)) => {
            args.annotations = None;
            match args.inputs() {
                Ok(inputs) => check_rules(&inputs),
                Err(error) => check_refusal(&error),
            }
        }
        Some(_) => return,
    }

    match invocation.config() {
        Ok(config) => {
            check_revalidates(&config);
            let options = invocation.runtime_options(&config);
            assert_eq!(options.inbound_listen.port(), config.in_port);
            assert_eq!(options.outbound_listen.port(), config.out_port);
            if let Ok(settings) = invocation.settings() {
                check_tls_out(&settings, config.proxy_type);
            }
        }
        Err(error) => check_refusal(&error),
    }
    if let Ok(settings) = invocation.settings() {
        if let Ok(redirect) = RedirectSettings::from_settings(&settings) {
            check_rules(&RuleInputs {
                redirect,
                proxy_uid: 2102,
                admin_port: 4191,
            });
        }
    }
    if let Err(error) = invocation.capture_settings() {
        check_refusal(&error);
    }
    if let Err(error) = invocation.sink_options() {
        check_refusal(&error);
    }
    let _ = invocation.admin_addr();
}

pub fn annotations_file(data: &[u8]) {
    // The proxy reads the file with read_to_string: only UTF-8 text ever reaches the parser.
    let text = String::from_utf8_lossy(data);
    match parse_annotations_file(&text) {
        Ok(settings) => validate_settings(&settings),
        Err(error) => {
            let lines = text.lines().count();
            assert!(
                (1..=lines).contains(&error.line),
                "line {} of {lines}",
                error.line
            );
            let _ = error.to_string();
        }
    }

    // The same bytes as one value, written as the kubelet writes it.
    let key = Setting::ProxyHost.annotation_key();
    let file = format!(
        "kubernetes.io/config.seen=\"2026-11-26T10:00:00Z\"\n{key}={}\n",
        go_quote(data)
    );
    let settings = parse_annotations_file(&file)
        .unwrap_or_else(|e| panic!("a Go-quoted value must parse: {e}\n{file}"));
    let value = settings
        .get(Setting::ProxyHost)
        .expect("the annotation is one of the spec's");
    assert_eq!(value.source, Source::Annotation);
    assert_eq!(
        value.value,
        String::from_utf8_lossy(data),
        "value read back from {file:?}"
    );
    validate_settings(&settings);
}

pub fn ignore_ports(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = PortList::parse(&text);
    let reference = reference_port_list(&text);
    match (&parsed, &reference) {
        (Ok(list), Some(expected)) => {
            let ranges: Vec<(u16, u16)> =
                list.ranges().iter().map(|r| (r.low(), r.high())).collect();
            assert_eq!(&ranges, expected, "ranges of {text:?}");
            let printed = list.to_string();
            assert_eq!(
                PortList::parse(&printed).as_ref(),
                Ok(list),
                "{text:?} printed as {printed:?}"
            );
        }
        (Err(problem), None) => {
            let _ = problem.to_string();
        }
        (Ok(list), None) => panic!("{text:?} accepted as {list} but the grammar refuses it"),
        (Err(problem), Some(expected)) => {
            panic!("{text:?} refused ({problem}) but the grammar reads {expected:?}")
        }
    }

    // Through the settings, as init-iptables and the injector take it.
    let mut settings = RawSettings::default();
    settings.offer(Setting::IgnoreInboundPorts, text.as_ref(), Source::Env);
    settings.offer(
        Setting::IgnoreOutboundPorts,
        text.as_ref(),
        Source::Annotation,
    );
    match RedirectSettings::from_settings(&settings) {
        Ok(redirect) => {
            assert!(parsed.is_ok());
            check_rules(&RuleInputs {
                redirect,
                proxy_uid: 2102,
                admin_port: 4191,
            });
        }
        Err(error) => {
            assert!(parsed.is_err());
            let message = error.to_string();
            assert!(
                message.starts_with("invalid PROXY_IGNORE_INBOUND_PORTS"),
                "{message}"
            );
        }
    }
}

/// Validates settings every way the sidecar uses them, checking what validates.
fn validate_settings(settings: &RawSettings) {
    match ProxyConfig::from_settings(settings) {
        Ok(config) => {
            check_revalidates(&config);
            check_tls_out(settings, config.proxy_type);
        }
        Err(error) => check_refusal(&error),
    }
    match RedirectSettings::from_settings(settings) {
        Ok(redirect) => check_rules(&RuleInputs {
            redirect,
            proxy_uid: 2102,
            admin_port: 4191,
        }),
        Err(error) => check_refusal(&error),
    }
}

/// tls-out's settings: a refusal is one line naming the setting; an accepted exclusion list excludes what
/// it names (a name itself, any name below a `*.` domain, an address) and intercepts nothing when off.
fn check_tls_out(settings: &RawSettings, proxy_type: ProxyType) {
    match TlsOutSettings::from_settings(settings, proxy_type) {
        Ok(tls) => {
            for pattern in &tls.exclude {
                let covered = match pattern {
                    HostPattern::Name(name) => name.clone(),
                    HostPattern::Below(domain) => format!("x.{domain}"),
                    HostPattern::Ip(ip) => ip.to_string(),
                };
                assert!(
                    !tls.intercepts(&covered),
                    "{covered:?} is excluded by {pattern:?}"
                );
            }
            if !tls.enabled {
                assert!(!tls.intercepts("api.example.test"));
            }
        }
        Err(error) => check_refusal(&error),
    }
}

/// A refusal is what the sidecar prints before exiting 2 and what the injector's denial says: one line
/// that starts by naming what was invalid, even when the value it quotes holds newlines or quotes.
fn check_refusal(error: &dyn std::fmt::Display) {
    let message = error.to_string();
    assert!(
        message.starts_with("invalid ") && !message.contains(['\n', '\r']),
        "not one line starting \"invalid \": {message:?}"
    );
}

/// A validated configuration, written back as settings, must validate to itself.
fn check_revalidates(config: &ProxyConfig) {
    let mut settings = RawSettings::default();
    let values = [
        (Setting::ProxyType, config.proxy_type.as_str().to_owned()),
        (Setting::ProxyProtocol, config.protocol.as_str().to_owned()),
        (Setting::ProxyHost, config.app.host.clone()),
        (Setting::ProxyPort, config.app.port.to_string()),
        (Setting::ProxyInPort, config.in_port.to_string()),
        (Setting::ProxyOutPort, config.out_port.to_string()),
    ];
    for (setting, value) in values {
        settings.offer(setting, value, Source::Annotation);
    }
    assert_eq!(
        ProxyConfig::from_settings(&settings).as_ref(),
        Ok(config),
        "a configuration it accepted, written back as annotations"
    );
    let _ = config.app.to_string();
}

fn check_rules(inputs: &RuleInputs) {
    let rules = RuleSet::new(inputs);
    let _script = render(&steps(&rules), "iptables");
    // One pass over the rules' arguments, so that a list of thousands of ports stays cheap to check.
    let arguments: HashSet<&str> = rules
        .rules
        .iter()
        .chain(&rules.jumps)
        .flat_map(|rule| rule.spec.iter().map(String::as_str))
        .collect();
    for range in inputs
        .redirect
        .ignore_inbound
        .ranges()
        .iter()
        .chain(inputs.redirect.ignore_outbound.ranges())
    {
        assert!(
            arguments.contains(range.to_iptables().as_str()),
            "ignored ports {range} missing from the rules"
        );
    }
}

/// The documented grammar, read plainly: blank for none, else comma-separated entries `port` or
/// `low-high` (whitespace allowed around entries and the dash), ports 1-65535 in decimal digits, low <= high.
fn reference_port_list(text: &str) -> Option<Vec<(u16, u16)>> {
    if text.trim().is_empty() {
        return Some(Vec::new());
    }
    let port = |digits: &str| -> Option<u16> {
        let digits = digits.trim();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let without_zeros = digits.trim_start_matches('0');
        if without_zeros.len() > 5 {
            return None;
        }
        without_zeros
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| p as u16)
    };
    text.split(',')
        .map(|entry| match entry.split_once('-') {
            None => port(entry).map(|p| (p, p)),
            Some((low, high)) => {
                let (low, high) = (port(low)?, port(high)?);
                (low <= high).then_some((low, high))
            }
        })
        .collect()
}

/// Go's `strconv.Quote`, as the kubelet writes an annotation value: bytes that are not UTF-8 as `\xNN`,
/// the usual escapes, and the rest either as itself or as `\u`/`\U`, alternating so both are read.
fn go_quote(bytes: &[u8]) -> String {
    let mut quoted = String::from("\"");
    let mut escape_next = false;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\u{7}' => quoted.push_str("\\a"),
                '\u{8}' => quoted.push_str("\\b"),
                '\u{c}' => quoted.push_str("\\f"),
                '\n' => quoted.push_str("\\n"),
                '\r' => quoted.push_str("\\r"),
                '\t' => quoted.push_str("\\t"),
                '\u{b}' => quoted.push_str("\\v"),
                ' '..='~' => quoted.push(c),
                // The other ASCII controls; a `\x` escape is one byte, so only ASCII may take it.
                c if c.is_ascii() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
                c => {
                    escape_next = !escape_next;
                    match (escape_next, c as u32) {
                        (false, _) => quoted.push(c),
                        (true, code @ ..=0xffff) => quoted.push_str(&format!("\\u{code:04x}")),
                        (true, code) => quoted.push_str(&format!("\\U{code:08x}")),
                    }
                }
            }
        }
        for byte in chunk.invalid() {
            quoted.push_str(&format!("\\x{byte:02x}"));
        }
    }
    quoted.push('"');
    quoted
}
