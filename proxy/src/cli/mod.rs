//! Command line and environment: the spec's settings as flags (`--proxy-type`) and variables
//! (`PROXY_TYPE`), a downward-API annotations file, and the runtime options.
//!
//! Setting values are taken as text and validated by the config model, so a bad value gets the same
//! message here as in the injector. Precedence: flag, then environment, then annotations file, then the
//! spec's default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use http::HeaderName;

use crate::capture::nats::{NatsAccess, NatsAddress, NatsSinkOptions, MESSAGE_RECORDS};
use crate::capture::{CaptureSettings, Destination, Rotation, SinkOptions};
use crate::config::{excerpt, ProxyConfig, Quoted, RawSettings, Setting, TlsOutSettings};
use crate::options::RuntimeOptions;
use crate::setting_sources::{
    settings_from_flags_and_env, with_annotations_file, AnnotationsError,
};

mod ca;
mod capture_pull;
mod capture_show;
mod clap_error;
mod replay;
mod skipped_lines;
mod wait_before_stop;
mod wait_ready;

pub use clap_error::exit as exit_on_clap_error;

#[derive(Debug, Parser)]
#[command(
    name = "sidecar-proxy",
    version,
    args_conflicts_with_subcommands = true,
    about = "Traffic-capture sidecar: relays the pod's traffic as a reverse, forward or dual proxy (tcp, http, socks4/4a/5)"
)]
pub struct Cli {
    /// A tool subcommand (`capture show`, `capture export`, `init-iptables`, ...); without one the sidecar runs
    /// the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// transparent | reverse | forward | dual [default: transparent]
    #[arg(long, env = "PROXY_TYPE", value_name = "TYPE")]
    pub proxy_type: Option<String>,

    /// tcp | http | socks | tcp:http | tcp:socks [default: http]
    #[arg(long, env = "PROXY_PROTOCOL", value_name = "PROTOCOL")]
    pub proxy_protocol: Option<String>,

    /// Host of the app the reverse proxy delivers to [default: localhost]
    #[arg(long, env = "PROXY_HOST", value_name = "HOST")]
    pub proxy_host: Option<String>,

    /// Port of the app the reverse proxy delivers to [default: 80]
    #[arg(long, env = "PROXY_PORT", value_name = "PORT")]
    pub proxy_port: Option<String>,

    /// Port of the inbound (reverse) listener [default: 4143]
    #[arg(long, env = "PROXY_IN_PORT", value_name = "PORT")]
    pub proxy_in_port: Option<String>,

    /// Port of the outbound (forward) listener [default: 4140]
    #[arg(long, env = "PROXY_OUT_PORT", value_name = "PORT")]
    pub proxy_out_port: Option<String>,

    /// Terminate the app's outbound TLS with certificates of the capture CA and record the HTTP inside
    /// (`--tls-out` alone means true) [default: false]
    #[arg(
        long,
        env = "PROXY_TLS_OUT",
        value_name = "true|false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub tls_out: Option<String>,

    /// Hosts whose TLS tls-out leaves untouched: names, *.domain wildcards and IP addresses, comma-separated
    #[arg(long, env = "PROXY_TLS_OUT_EXCLUDE", value_name = "HOSTS")]
    pub tls_out_exclude: Option<String>,

    /// Directory holding the capture CA as tls.crt and tls.key (a mounted kubernetes.io/tls Secret)
    #[arg(
        long,
        env = "PROXY_TLS_CA_DIR",
        value_name = "DIR",
        default_value = crate::tls_out::DEFAULT_CA_DIR
    )]
    pub tls_ca_dir: PathBuf,

    /// Extra CA certificates (PEM) upstream certificates may chain to, besides the system roots
    #[arg(long, env = "PROXY_TLS_UPSTREAM_CA", value_name = "FILE")]
    pub tls_upstream_ca: Option<PathBuf>,

    /// Where to write, at start, the files apps use to trust the capture CA (ca.crt, ca-bundle.crt,
    /// truststore.p12); nothing is written when unset
    #[arg(long, env = "PROXY_TLS_TRUST_DIR", value_name = "DIR")]
    pub tls_trust_dir: Option<PathBuf>,

    /// Kubernetes downward-API annotations file; its sidecar.speedscale.com/* keys configure the proxy
    #[arg(long, env = "PROXY_ANNOTATIONS", value_name = "FILE")]
    pub annotations: Option<PathBuf>,

    /// Address the inbound listener binds (all interfaces, so callers reach it on the pod IP)
    #[arg(
        long,
        env = "PROXY_IN_BIND",
        value_name = "IP",
        default_value_t = crate::options::DEFAULT_INBOUND_BIND
    )]
    pub proxy_in_bind: IpAddr,

    /// Address the outbound listener binds (loopback, so the sidecar is never an open proxy)
    #[arg(
        long,
        env = "PROXY_OUT_BIND",
        value_name = "IP",
        default_value_t = crate::options::DEFAULT_OUTBOUND_BIND
    )]
    pub proxy_out_bind: IpAddr,

    /// Time a client has to finish its proxy handshake or request head
    #[arg(long, env = "PROXY_HANDSHAKE_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Time allowed to open a connection to the upstream or the app
    #[arg(long, env = "PROXY_CONNECT_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// After SIGTERM/SIGINT, how long the listeners keep serving new connections (less once no connection
    /// has been open for a second), while the pod leaves its Services' endpoints [default: 5s]
    #[arg(long, env = "PROXY_DRAIN_DURATION", value_name = "DURATION")]
    pub drain_duration: Option<String>,

    /// Once the drain is over, how long open connections may finish before exit
    #[arg(long, env = "PROXY_SHUTDOWN_GRACE", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Time the app or an upstream has to begin its HTTP response once the whole request reached it (504 after)
    #[arg(long, env = "PROXY_UPSTREAM_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Open client connections allowed per direction (inbound, outbound); more are refused politely
    #[arg(
        long,
        env = "PROXY_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = crate::options::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_connections: usize,

    /// Largest HTTP request head (request line and headers) accepted; a larger one is answered 431
    #[arg(long, env = "PROXY_MAX_REQUEST_HEAD", value_name = "SIZE", default_value = "64KiB", value_parser = parse_request_head_limit)]
    pub max_request_head: usize,

    /// Idle connections to the app the reverse `http` listener keeps for later requests, shared by all
    /// client connections (0: one app connection per client connection, closed with it)
    #[arg(
        long,
        env = "PROXY_APP_IDLE_CONNECTIONS",
        value_name = "N",
        default_value_t = crate::options::DEFAULT_APP_IDLE_CONNECTIONS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=65_536)
    )]
    pub app_idle_connections: usize,

    /// How long an idle app connection is kept after its last response; keep it below the app's own
    /// keep-alive timeout
    #[arg(long, env = "PROXY_APP_IDLE_TIMEOUT", value_name = "DURATION", default_value = "4s", value_parser = parse_duration)]
    pub app_idle_timeout: Duration,

    /// Bytes the sidecar may hold for its peers (relay buffers, request heads, capture copies); default:
    /// half the container's memory limit, none outside a limited container
    #[arg(long, env = "PROXY_MEMORY_BUDGET", value_name = "SIZE", value_parser = parse_size)]
    pub memory_budget: Option<u64>,

    /// Where capture records go: a JSON-lines file, `-` for stdout, or `off`
    #[arg(
        long,
        env = "PROXY_CAPTURE",
        value_name = "PATH|-|off",
        default_value = "capture.jsonl"
    )]
    pub capture: String,

    /// Bytes of each body (and stream payload) kept in a record; the full length is always recorded
    #[arg(long, env = "PROXY_CAPTURE_BODY_LIMIT", value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub capture_body_limit: u64,

    /// Also keep the payload bytes of opaque streams (tcp relays, SOCKS, CONNECT), up to the body limit
    #[arg(long, env = "PROXY_CAPTURE_PAYLOAD")]
    pub capture_payload: bool,

    /// Also record kubelet probes (requests whose User-Agent starts with kube-probe/); by default they are
    /// only counted, in sidecar_capture_probes_skipped_total
    #[arg(long, env = "PROXY_CAPTURE_PROBES")]
    pub capture_probes: bool,

    /// Comma-separated header names whose values are recorded as [REDACTED]; `none` records every value
    #[arg(
        long,
        env = "PROXY_CAPTURE_REDACT",
        value_name = "HEADERS|none",
        default_value = "authorization,proxy-authorization,cookie,set-cookie"
    )]
    pub capture_redact: String,

    /// Start a new capture file when the current one reaches this size (the old one becomes PATH.1)
    #[arg(long, env = "PROXY_CAPTURE_ROTATE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub capture_rotate_size: Option<u64>,

    /// Rotated capture files kept (PATH.1 ... PATH.N)
    #[arg(
        long,
        env = "PROXY_CAPTURE_ROTATE_KEEP",
        value_name = "N",
        default_value_t = 5,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub capture_rotate_keep: usize,

    /// Records that may wait for the writer; beyond that new records are dropped and counted
    #[arg(
        long,
        env = "PROXY_CAPTURE_QUEUE",
        value_name = "N",
        default_value_t = 8192,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub capture_queue: usize,

    /// Also publish records to NATS JetStream: nats://HOST:PORT/SUBJECT or tls://HOST:PORT/SUBJECT; the
    /// subject may use {namespace} and {pod} [default subject: capture.{namespace}.{pod}]
    #[arg(long, env = "PROXY_CAPTURE_SINK", value_name = "URL")]
    pub capture_sink: Option<String>,

    /// The NATS credentials: a .creds file (user JWT and nkey seed) or a file holding a token
    #[arg(long, env = "PROXY_CAPTURE_SINK_CREDENTIALS", value_name = "FILE")]
    pub capture_sink_credentials: Option<PathBuf>,

    /// PEM certificates the NATS server's certificate may chain to, besides the system's (implies TLS)
    #[arg(long, env = "PROXY_CAPTURE_SINK_CA", value_name = "FILE")]
    pub capture_sink_ca: Option<PathBuf>,

    /// Where records wait until NATS acknowledges them (kept across restarts)
    #[arg(
        long,
        env = "PROXY_CAPTURE_SPOOL_DIR",
        value_name = "DIR",
        default_value = "capture-spool"
    )]
    pub capture_spool_dir: PathBuf,

    /// Bytes the spool may hold while NATS is away; records beyond it are dropped and counted
    #[arg(long, env = "PROXY_CAPTURE_SPOOL_SIZE", value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub capture_spool_size: u64,

    /// The most records one JetStream message carries, 1 to 1024 (1: a message per record, its Nats-Msg-Id the record's uid)
    #[arg(
        long,
        env = "PROXY_CAPTURE_SINK_RECORDS_PER_MESSAGE",
        value_name = "N",
        default_value_t = crate::capture::nats::MESSAGE_RECORDS
    )]
    pub capture_sink_records_per_message: u64,

    /// Port of the admin listener (/healthz, /readyz, /metrics)
    #[arg(
        long,
        env = "PROXY_ADMIN_PORT",
        value_name = "PORT",
        // The port init-iptables leaves unredirected: the two defaults must stay one.
        default_value_t = crate::iptables::rules::DEFAULT_ADMIN_PORT
    )]
    pub admin_port: u16,

    /// Address the admin listener binds (all interfaces, so kubelet probes and Prometheus reach it)
    #[arg(
        long,
        env = "PROXY_ADMIN_BIND",
        value_name = "IP",
        default_value = "0.0.0.0"
    )]
    pub admin_bind: IpAddr,

    /// Mock mode: answer the app's outbound HTTP (forward and dual modes) from this capture's outbound
    /// exchanges instead of the network
    #[arg(long, env = "PROXY_MOCK", value_name = "CAPTURE")]
    pub mock: Option<String>,

    /// With --mock: `recorded` waits as long as each recorded exchange took before answering
    /// [default: answer at once]
    #[arg(long, env = "PROXY_MOCK_LATENCY", value_name = "recorded", value_parser = ["recorded", "none"])]
    pub mock_latency: Option<String>,

    /// With --mock, when no recorded exchange matches: 502 or 404 (naming the nearest recorded request),
    /// or passthrough (send it on to the network)
    #[arg(
        long,
        env = "PROXY_MOCK_UNMATCHED",
        value_name = "502|404|passthrough",
        default_value = "502"
    )]
    pub mock_unmatched: String,

    /// With --mock: a JSON request body field left out of matching (repeatable; the variable takes a
    /// comma-separated list), JSONPath-like: $.requestId, $.items[*].at
    #[arg(
        long = "mock-ignore-json",
        env = "PROXY_MOCK_IGNORE_JSON",
        value_name = "PATH",
        value_delimiter = ','
    )]
    pub mock_ignore_json: Vec<String>,

    /// With --mock: a query parameter left out of matching (repeatable; the variable takes a
    /// comma-separated list)
    #[arg(
        long = "mock-ignore-query",
        env = "PROXY_MOCK_IGNORE_QUERY",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub mock_ignore_query: Vec<String>,

    /// Transparent mode: the uid the sidecar must run as, the one init-iptables exempts from redirection
    #[arg(long, env = "PROXY_UID", value_name = "UID", default_value_t = crate::iptables::rules::DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,
}

/// The largest body copy a record may keep: memory is what bounds it (see docs/capture.md).
const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// The command line, parsed, with the origin of every spec setting.
pub struct Invocation {
    pub cli: Cli,
    /// Settings given as flags or environment variables (annotations are added by [`Invocation::settings`]).
    explicit: RawSettings,
    /// Where `--admin-port` came from, for a message that names it as the user wrote it.
    admin_port_source: Option<clap::parser::ValueSource>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    Annotations(#[from] AnnotationsError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A runtime option with a value the sidecar cannot use.
    #[error("{0}")]
    Option(String),
}

impl Invocation {
    /// Parses arguments and environment; clap's own errors (unknown flags, --help) are returned as such.
    pub fn parse_from<I, T>(args: I) -> Result<Invocation, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let command = Cli::command();
        let matches = command
            .clone()
            .try_get_matches_from(&args)
            .map_err(|e| clap_error::naming_the_variable(e, &command, &args))
            .map_err(|e| clap_error::with_port_tip(e, &command))?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let (Some(Command::InitIptables(args)), Some((_, sub))) =
            (&mut cli.command, matches.subcommand())
        {
            args.record_sources(sub);
        }
        let explicit = explicit_settings(&cli, &matches);
        let admin_port_source = matches.value_source("admin_port");
        Ok(Invocation {
            cli,
            explicit,
            admin_port_source,
        })
    }

    /// All settings, the annotations file (if any) filling what flags and environment left unset.
    pub fn settings(&self) -> Result<RawSettings, InvocationError> {
        Ok(with_annotations_file(
            &self.explicit,
            self.cli.annotations.as_deref(),
        )?)
    }

    /// The validated configuration.
    pub fn config(&self) -> Result<ProxyConfig, InvocationError> {
        Ok(ProxyConfig::from_settings(&self.settings()?)?)
    }

    /// tls-out's validated settings (off unless `tls-out` is true).
    pub fn tls_out_settings(
        &self,
        config: &ProxyConfig,
    ) -> Result<TlsOutSettings, InvocationError> {
        Ok(TlsOutSettings::from_settings(
            &self.settings()?,
            config.proxy_type,
        )?)
    }

    /// Where tls-out's files are.
    pub fn tls_out_files(&self) -> crate::tls_out::startup::TlsOutFiles {
        crate::tls_out::startup::TlsOutFiles {
            ca_dir: self.cli.tls_ca_dir.clone(),
            upstream_ca: self.cli.tls_upstream_ca.clone(),
            trust_dir: self.cli.tls_trust_dir.clone(),
        }
    }

    /// Capture settings: what each record keeps.
    pub fn capture_settings(&self) -> Result<CaptureSettings, InvocationError> {
        let redact = self.cli.capture_redact.trim();
        let redacted_headers = if redact.eq_ignore_ascii_case("none") || redact.is_empty() {
            Vec::new()
        } else {
            redact
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                        InvocationError::Option(format!(
                            "invalid --capture-redact {}: {} is not a header name; allowed: comma-separated header names, or none",
                            Quoted(redact),
                            Quoted(name)
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        if self.cli.capture_body_limit > MAX_BODY_LIMIT {
            return Err(InvocationError::Option(format!(
                "invalid --capture-body-limit \"{}\": allowed values are sizes up to 64MiB (each in-flight exchange may hold two such copies)",
                bytesize::ByteSize::b(self.cli.capture_body_limit)
            )));
        }
        Ok(CaptureSettings {
            body_limit: usize::try_from(self.cli.capture_body_limit).unwrap_or(usize::MAX),
            stream_payload: self.cli.capture_payload,
            redacted_headers,
            record_probes: self.cli.capture_probes,
        })
    }

    /// Where records go and how the writer behaves.
    pub fn sink_options(&self) -> Result<SinkOptions, InvocationError> {
        let destination = Destination::parse(&self.cli.capture);
        let rotation = match (self.cli.capture_rotate_size, &destination) {
            (None, _) => None,
            (Some(0), _) => {
                return Err(InvocationError::Option(
                    "invalid --capture-rotate-size \"0\": allowed values are sizes above zero, like 64MiB".into(),
                ))
            }
            (Some(_), Destination::Stdout | Destination::Off) => {
                return Err(InvocationError::Option(format!(
                    "invalid --capture-rotate-size with --capture {}: only a capture file can be rotated",
                    Quoted(&self.cli.capture)
                )))
            }
            (Some(max_bytes), Destination::File(_)) => Some(Rotation {
                max_bytes,
                keep: self.cli.capture_rotate_keep.max(1),
            }),
        };
        Ok(SinkOptions {
            destination,
            queue_capacity: self.cli.capture_queue.max(1),
            rotation,
            nats: self.nats_sink_options()?,
        })
    }

    /// The NATS sink, when `--capture-sink` names one.
    fn nats_sink_options(&self) -> Result<Option<NatsSinkOptions>, InvocationError> {
        let Some(text) = self.cli.capture_sink.as_deref() else {
            return Ok(None);
        };
        let address = NatsAddress::parse(text.trim(), false)
            .map_err(|e| InvocationError::Option(format!("invalid --capture-sink: {e}")))?;
        if self.cli.capture_spool_size < 64 * 1024 {
            return Err(InvocationError::Option(
                "invalid --capture-spool-size: allowed values are sizes of 64KiB or more, like 64MiB".into(),
            ));
        }
        let records_per_message = self.cli.capture_sink_records_per_message;
        if !(1..=MESSAGE_RECORDS).contains(&records_per_message) {
            return Err(InvocationError::Option(format!(
                "invalid --capture-sink-records-per-message {records_per_message}: allowed values are 1 to {MESSAGE_RECORDS} (1 sends each record as a message of its own)"
            )));
        }
        Ok(Some(NatsSinkOptions {
            address,
            access: NatsAccess {
                credentials: self.cli.capture_sink_credentials.clone(),
                ca: self.cli.capture_sink_ca.clone(),
            },
            spool_dir: self.cli.capture_spool_dir.clone(),
            spool_size: self.cli.capture_spool_size,
            records_per_message,
        }))
    }

    /// The mock the forward listener answers from (`--mock`), read and indexed; `None` without one.
    pub fn mock(&self) -> Result<Option<crate::mock::Mock>, InvocationError> {
        let unmatched = crate::mock::Unmatched::parse(&self.cli.mock_unmatched)
            .map_err(InvocationError::Option)?;
        let settings = self.settings()?;
        let Some(given) = settings.get(Setting::Mock) else {
            return Ok(None);
        };
        let path = std::path::Path::new(given.value.trim());
        let recorded_latency = self.cli.mock_latency.as_deref() == Some("recorded");
        let json = self
            .cli
            .mock_ignore_json
            .iter()
            .map(|path| crate::compare::JsonPath::parse(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InvocationError::Option(format!("invalid --mock-ignore-json: {e}")))?;
        let rules = crate::mock::MatchRules {
            json,
            query: self
                .cli
                .mock_ignore_query
                .iter()
                .map(|name| name.trim().to_owned())
                .collect(),
        };
        let (mock, skipped) = crate::mock::Mock::load(path, recorded_latency, unmatched, rules)
            .map_err(|e| {
                InvocationError::Option(format!("{}: {e}", Setting::Mock.spelled(given.source)))
            })?;
        tracing::info!(
            capture = %path.display(),
            exchanges = mock.index.len(),
            skipped_lines = skipped,
            "mock mode: outbound HTTP is answered from the capture"
        );
        Ok(Some(mock))
    }

    /// The admin listener's address.
    /// The memory budget in force: `--memory-budget`, else half the container's memory limit.
    pub fn memory_budget(&self) -> Option<usize> {
        self.cli
            .memory_budget
            .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX))
            .or_else(crate::budget::from_container_limit)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.cli.admin_bind, self.cli.admin_port)
    }

    /// How long the listeners keep serving after SIGTERM (flag, environment or annotation).
    pub fn drain_duration(&self) -> Result<Duration, InvocationError> {
        Ok(crate::config::drain_duration(&self.settings()?)?)
    }

    /// What [`crate::config::ignored_settings`] says of the settings given for `config`.
    pub fn ignored_settings(&self, config: &ProxyConfig) -> Vec<String> {
        self.settings()
            .map(|raw| crate::config::ignored_settings(config, &raw))
            .unwrap_or_default()
    }

    /// Refuses an admin port that one of the proxy's listeners also binds: one of the two would fail at
    /// start with "address in use", which names neither setting.
    pub fn check_admin_port(&self, config: &ProxyConfig) -> Result<(), InvocationError> {
        let overlaps = |bind: std::net::IpAddr| {
            bind == self.cli.admin_bind
                || bind.is_unspecified()
                || self.cli.admin_bind.is_unspecified()
        };
        let listeners = [
            (
                config.inbound_listener_port(),
                self.cli.proxy_in_bind,
                "inbound",
            ),
            (
                config.outbound_listener_port(),
                self.cli.proxy_out_bind,
                "outbound",
            ),
        ];
        for (port, bind, direction) in listeners {
            if port == Some(self.cli.admin_port) && overlaps(bind) {
                let admin = match self.admin_port_source {
                    Some(clap::parser::ValueSource::EnvVariable) => "PROXY_ADMIN_PORT",
                    Some(clap::parser::ValueSource::CommandLine) => "--admin-port",
                    _ => "the default admin port (--admin-port)",
                };
                return Err(InvocationError::Option(format!(
                    "{admin} {} is also the {direction} listener's port: the admin port (health, \
                     readiness, metrics) needs a port of its own; set --admin-port / PROXY_ADMIN_PORT to \
                     another one, or move the {direction} listener (--proxy-{}-port)",
                    self.cli.admin_port,
                    if direction == "inbound" { "in" } else { "out" },
                )));
            }
        }
        Ok(())
    }

    /// Runtime options for a validated configuration, with the default drain (see
    /// [`Invocation::drain_duration`]).
    pub fn runtime_options(&self, config: &ProxyConfig) -> RuntimeOptions {
        RuntimeOptions {
            drain_duration: crate::config::DEFAULT_DRAIN_DURATION,
            inbound_listen: SocketAddr::new(self.cli.proxy_in_bind, config.in_port),
            outbound_listen: SocketAddr::new(self.cli.proxy_out_bind, config.out_port),
            handshake_timeout: self.cli.handshake_timeout,
            connect_timeout: self.cli.connect_timeout,
            shutdown_grace: self.cli.shutdown_grace,
            upstream_timeout: self.cli.upstream_timeout,
            max_connections: self.cli.max_connections,
            max_request_head: self.cli.max_request_head,
            app_idle_connections: self.cli.app_idle_connections,
            app_idle_timeout: self.cli.app_idle_timeout,
        }
    }
}

fn explicit_settings(cli: &Cli, matches: &ArgMatches) -> RawSettings {
    let fields = [
        (Setting::ProxyType, "proxy_type", &cli.proxy_type),
        (
            Setting::ProxyProtocol,
            "proxy_protocol",
            &cli.proxy_protocol,
        ),
        (Setting::ProxyHost, "proxy_host", &cli.proxy_host),
        (Setting::ProxyPort, "proxy_port", &cli.proxy_port),
        (Setting::ProxyInPort, "proxy_in_port", &cli.proxy_in_port),
        (Setting::ProxyOutPort, "proxy_out_port", &cli.proxy_out_port),
        (Setting::TlsOut, "tls_out", &cli.tls_out),
        (
            Setting::TlsOutExclude,
            "tls_out_exclude",
            &cli.tls_out_exclude,
        ),
        (
            Setting::DrainDuration,
            "drain_duration",
            &cli.drain_duration,
        ),
        (Setting::Mock, "mock", &cli.mock),
    ];
    settings_from_flags_and_env(matches, fields)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        // A zero timeout would fail every handshake and connect at once.
        Ok(d) if d.is_zero() => {
            Err("must be longer than zero (write durations like 10s, 500ms or 1m)".into())
        }
        Ok(d) => Ok(d),
        // humantime's message quotes the part it could not read, which can be all of a huge value.
        Err(e) => Err(format!(
            "{} (write durations like 10s, 500ms or 1m)",
            excerpt(&e.to_string())
        )),
    }
}

/// The request-head limit: below 1 KiB ordinary requests would fail; above 256 KiB hyper's own read
/// buffer limit (about 400 KB) would be reached first for partial heads, so the setting would not be
/// the limit that applies.
fn parse_request_head_limit(text: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<u64> = 1024..=256 * 1024;
    let size = parse_size(text)?;
    if !RANGE.contains(&size) {
        return Err("allowed sizes are 1KiB to 256KiB".into());
    }
    usize::try_from(size).map_err(|_| "allowed sizes are 1KiB to 256KiB".into())
}

/// Sizes as people write them: `1048576`, `512KiB`, `1MiB`, `10MB`.
fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| {
            format!(
                "{} (write sizes like 65536, 512KiB or 1MiB)",
                excerpt(&e.to_string())
            )
        })
}

/// Subcommands: tools around the proxy. Without one, `sidecar-proxy [flags]` runs the proxy.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with capture files
    #[command(subcommand)]
    Capture(CaptureCommand),

    /// Set up transparent mode's iptables rules (run by the pod's init container, as root / NET_ADMIN)
    InitIptables(crate::iptables::InitIptablesArgs),

    /// Wait until the sidecar answers /readyz (the sidecar container's postStart hook, so the app starts
    /// after the sidecar listens)
    WaitReady(wait_ready::WaitReadyArgs),

    /// Wait a set time, then return (the classic sidecar's preStop hook, so the sidecar is signalled only
    /// after the app had that long to finish)
    WaitBeforeStop(wait_before_stop::WaitBeforeStopArgs),

    /// Make the capture CA tls-out signs its certificates with
    #[command(subcommand)]
    Ca(ca::CaCommand),

    /// Send a capture's inbound HTTP exchanges to a target (a new build of the app) and compare each
    /// answer with the recorded one (exit 0 all matched, 1 one differed or failed, 2 bad usage)
    Replay(replay::ReplayArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaptureCommand {
    /// Convert capture records (JSON lines) to HAR 1.2, for browser devtools, Postman or mitmproxy
    Export(ExportArgs),

    /// Print capture records as readable blocks (bodies decoded), filtered; `--json` passes them through
    Show(capture_show::ShowArgs),

    /// Print records as they are appended to a capture file, following it across rotation
    Tail(capture_show::TailArgs),

    /// Read records the sidecars published to NATS JetStream (--capture-sink) as JSON lines
    Pull(capture_pull::PullArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write HAR 1.2 (HTTP exchanges only; stream records are skipped). HAR is the default and only
    /// format; the flag is accepted for scripts that pass it
    #[arg(long)]
    pub har: bool,

    /// The HAR file to write [default: stdout]
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Refuse the input at its first line that is not a capture record (exit 2) instead of skipping it
    #[arg(long)]
    pub strict: bool,

    /// Capture files, JSON lines; `-` reads stdin
    #[arg(value_name = "INPUT.jsonl", required = true)]
    pub inputs: Vec<PathBuf>,
}

impl ExportArgs {
    fn run(self) -> std::process::ExitCode {
        use crate::capture::har::UnreadableLines;
        let unreadable = if self.strict {
            UnreadableLines::Refuse
        } else {
            UnreadableLines::Skip
        };
        let mut skipped = skipped_lines::SkippedLineReporter::default();
        let mut on_skipped = |error: &crate::capture::har::ExportError| skipped.report(error);
        let exported = crate::capture::har::export_files(
            &self.inputs,
            self.output.as_deref(),
            unreadable,
            &mut on_skipped,
        );
        match exported {
            Ok(summary) => {
                let plural = |n: usize| if n == 1 { "" } else { "s" };
                let (entries, streams) = (summary.entries, summary.skipped_streams);
                let skipped_lines = match summary.skipped_lines {
                    0 => String::new(),
                    n => format!("; skipped {n} unreadable line{}", plural(n)),
                };
                eprintln!(
                    "sidecar-proxy: wrote {entries} HTTP exchange{} to {} as HAR 1.2; skipped {streams} stream record{}{skipped_lines}",
                    plural(entries),
                    self.output
                        .as_deref()
                        .filter(|path| path.as_os_str() != "-")
                        .map_or("stdout".into(), |path| path.display().to_string()),
                    plural(streams),
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                std::process::ExitCode::from(e.exit_code())
            }
        }
    }
}

impl Command {
    /// Runs the subcommand: 0 on success, 2 for input it refuses (a malformed line under `--strict`), 1 when
    /// it cannot write.
    pub fn run(self) -> std::process::ExitCode {
        match self {
            Command::InitIptables(args) => args.run(),
            Command::WaitReady(args) => args.run(),
            Command::WaitBeforeStop(args) => args.run(),
            Command::Ca(command) => command.run(),
            Command::Replay(args) => args.run(),
            Command::Capture(CaptureCommand::Export(args)) => args.run(),
            Command::Capture(CaptureCommand::Show(args)) => args.run(),
            Command::Capture(CaptureCommand::Tail(args)) => args.run(),
            Command::Capture(CaptureCommand::Pull(args)) => args.run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyType;

    /// The binary's defaults (clap's) and the library's (`RuntimeOptions::for_config`, used by embedders and
    /// tests) must not drift apart.
    #[test]
    fn flag_defaults_match_the_library_defaults() {
        let invocation =
            Invocation::parse_from(["sidecar-proxy", "--proxy-type", "reverse"]).unwrap();
        let config = invocation.config().unwrap();
        assert_eq!(config.proxy_type, ProxyType::Reverse);
        assert_eq!(
            invocation.runtime_options(&config),
            RuntimeOptions::for_config(&config)
        );
    }

    #[test]
    fn limits_and_the_upstream_timeout_come_from_flags() {
        let invocation = Invocation::parse_from([
            "sidecar-proxy",
            "--proxy-type",
            "reverse",
            "--upstream-timeout",
            "5s",
            "--max-connections",
            "7",
            "--max-request-head",
            "16KiB",
            "--app-idle-connections",
            "0",
            "--app-idle-timeout",
            "1500ms",
        ])
        .unwrap();
        let options = invocation.runtime_options(&invocation.config().unwrap());
        assert_eq!(options.upstream_timeout, Duration::from_secs(5));
        assert_eq!(options.max_connections, 7);
        assert_eq!(options.max_request_head, 16 * 1024);
        assert_eq!(options.app_idle_connections, 0);
        assert_eq!(options.app_idle_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn limits_out_of_range_are_refused_by_name() {
        for (flag, value) in [
            ("--max-connections", "0"),
            ("--max-request-head", "512"),
            ("--max-request-head", "1MiB"),
            ("--max-request-head", "lots"),
            ("--upstream-timeout", "0s"),
        ] {
            let error = Invocation::parse_from(["sidecar-proxy", flag, value])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(error.to_string().contains(flag), "{error}");
        }
    }
}
