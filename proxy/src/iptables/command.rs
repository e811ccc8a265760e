//! `sidecar-proxy init-iptables`: what a transparent-mode pod's init container runs before the app starts.
//!
//! Settings come from flags, then the environment (the same variables the proxy reads), then a downward-API
//! annotations file. Exit status: 0 applied (or printed, with `--dry-run`), 2 invalid settings, 1 when
//! iptables refused a command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, Args};

use super::apply::{apply, usable};
use super::backend::{select, BackendChoice};
use super::exec::SystemRunner;
use super::rules::{RuleInputs, RuleSet, DEFAULT_ADMIN_PORT, DEFAULT_PROXY_UID};
use super::script::{render, steps};
use crate::config::{ConfigError, RawSettings, RedirectSettings, Setting};
use crate::setting_sources::{
    settings_from_flags_and_env, with_annotations_file, AnnotationsError,
};

const EXIT_BAD_SETTINGS: u8 = 2;

/// Why the rule inputs could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error(transparent)]
    Annotations(#[from] AnnotationsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Debug, Args)]
pub struct InitIptablesArgs {
    /// Port inbound traffic is redirected to (the sidecar's inbound listener) [default: 4143]
    #[arg(long, env = "PROXY_IN_PORT", value_name = "PORT")]
    pub proxy_in_port: Option<String>,

    /// Port outbound traffic is redirected to (the sidecar's outbound listener) [default: 4140]
    #[arg(long, env = "PROXY_OUT_PORT", value_name = "PORT")]
    pub proxy_out_port: Option<String>,

    /// The sidecar container's uid: its own connections are never redirected
    #[arg(long, env = "PROXY_UID", value_name = "UID", default_value_t = DEFAULT_PROXY_UID)]
    pub proxy_uid: u32,

    /// The sidecar's admin port: inbound connections to it (probes, metrics) are not redirected
    #[arg(long, env = "PROXY_ADMIN_PORT", value_name = "PORT", default_value_t = DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,

    /// Inbound destination ports reaching the app directly, like 22,8000-8100 [default: none]
    #[arg(long, env = "PROXY_IGNORE_INBOUND_PORTS", value_name = "LIST")]
    pub ignore_inbound_ports: Option<String>,

    /// Outbound destination ports leaving the pod directly, like 5432,6379 [default: none]
    #[arg(long, env = "PROXY_IGNORE_OUTBOUND_PORTS", value_name = "LIST")]
    pub ignore_outbound_ports: Option<String>,

    /// Kubernetes downward-API annotations file; its sidecar.speedscale.com/* keys fill what flags and
    /// environment leave unset
    #[arg(long, env = "PROXY_ANNOTATIONS", value_name = "FILE")]
    pub annotations: Option<PathBuf>,

    /// Print the commands instead of running them
    #[arg(long)]
    pub dry_run: bool,

    /// Which iptables to run
    #[arg(
        long,
        env = "PROXY_IPTABLES_BACKEND",
        value_enum,
        value_name = "BACKEND",
        default_value = "auto"
    )]
    pub iptables_backend: BackendChoice,

    /// Settings given as flags or environment, with their source (filled from the parsed matches).
    #[arg(skip)]
    explicit: RawSettings,
}

impl InitIptablesArgs {
    /// Records where each setting came from (flag or environment), so messages name it as written.
    pub fn record_sources(&mut self, matches: &ArgMatches) {
        let fields = [
            (Setting::ProxyInPort, "proxy_in_port", &self.proxy_in_port),
            (
                Setting::ProxyOutPort,
                "proxy_out_port",
                &self.proxy_out_port,
            ),
            (
                Setting::IgnoreInboundPorts,
                "ignore_inbound_ports",
                &self.ignore_inbound_ports,
            ),
            (
                Setting::IgnoreOutboundPorts,
                "ignore_outbound_ports",
                &self.ignore_outbound_ports,
            ),
        ];
        self.explicit = settings_from_flags_and_env(matches, fields);
    }

    /// The rule inputs: flags, then environment, then the annotations file, then the defaults.
    pub fn inputs(&self) -> Result<RuleInputs, InputsError> {
        let settings = with_annotations_file(&self.explicit, self.annotations.as_deref())?;
        Ok(RuleInputs {
            redirect: RedirectSettings::from_settings(&settings)?,
            proxy_uid: self.proxy_uid,
            admin_port: self.admin_port,
        })
    }

    pub fn run(self) -> ExitCode {
        let inputs = match self.inputs() {
            Ok(inputs) => inputs,
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                return ExitCode::from(EXIT_BAD_SETTINGS);
            }
        };
        let steps = steps(&RuleSet::new(&inputs));
        let mut runner = SystemRunner;
        let backend = select(self.iptables_backend, &mut runner);

        if self.dry_run {
            print!(
                "# sidecar-proxy init-iptables --dry-run: the commands it would run; nothing was changed\n\
                 # backend: {}\n\
                 # IPv4\n{}\
                 # IPv6 (applied where {} works in the pod)\n{}",
                backend.reason,
                render(&steps, backend.iptables),
                backend.ip6tables,
                render(&steps, backend.ip6tables),
            );
            return ExitCode::SUCCESS;
        }

        let changed = match apply(&steps, backend.iptables, &mut runner) {
            Ok(changed) => changed,
            Err(e) => {
                eprintln!("sidecar-proxy: init-iptables: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "sidecar-proxy: init-iptables: IPv4 rules in place with {} ({changed} commands run); backend: {}",
            backend.iptables, backend.reason
        );
        match usable(backend.ip6tables, &mut runner) {
            Ok(()) => match apply(&steps, backend.ip6tables, &mut runner) {
                Ok(changed) => eprintln!(
                    "sidecar-proxy: init-iptables: IPv6 rules in place with {} ({changed} commands run)",
                    backend.ip6tables
                ),
                Err(e) => {
                    eprintln!("sidecar-proxy: init-iptables: {e}");
                    return ExitCode::FAILURE;
                }
            },
            // A pod without IPv6 (no ip6tables, or no IPv6 nat in the kernel) has no IPv6 traffic to
            // redirect; say so rather than fail the pod.
            Err(e) => eprintln!(
                "sidecar-proxy: init-iptables: IPv6 traffic is not redirected: {e}"
            ),
        }
        ExitCode::SUCCESS
    }
}
