//! The command line: `serve` (the webhook), `inject` (offline, manifests in and out) and `certs` (a CA
//! and serving certificate for clusters without cert-manager). Every flag can also come from the
//! environment, as a Deployment sets it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand};

use crate::certs;
use crate::cluster_api::{ClusterAccess, SERVICE_ACCOUNT_DIR};
use crate::containers::SidecarOptions;
use crate::layout::{AutoLayout, SidecarLayout};
use crate::server::{AutoLayoutSource, ServerSettings};

/// Exit status for a configuration the injector refuses: nothing was done.
pub const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "sidecar-injector",
    version,
    about = "Adds sidecar-proxy to pods annotated sidecar.speedscale.com/inject: \"true\", as a mutating admission webhook or offline"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the mutating admission webhook over HTTPS (POST /mutate, GET /healthz)
    Serve(ServeArgs),
    /// Inject the sidecar into the pods (and pod templates) of YAML manifests, printed to stdout
    Inject(InjectArgs),
    /// Write a CA and a serving certificate for the webhook's Service; print the caBundle
    Certs(CertsArgs),
}

/// The repository of the sidecar image used when no `--sidecar-image` is given: set when building a
/// release (`SIDECAR_IMAGE_REPOSITORY=ghcr.io/<owner>/sidecar-proxy cargo build ...`) to where that
/// release's images are pushed; otherwise the name the Dockerfile builds are tagged with (docs/building.md).
const DEFAULT_IMAGE_REPOSITORY: &str = match option_env!("SIDECAR_IMAGE_REPOSITORY") {
    Some(repository) => repository,
    None => "sidecar-proxy",
};

/// The sidecar image of this release: [`DEFAULT_IMAGE_REPOSITORY`] tagged with the workspace version, the
/// version of this injector.
pub fn default_sidecar_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// How the added containers are configured: the same for `serve` and `inject`.
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// Image of the sidecar-proxy container (and of transparent mode's init container)
    #[arg(
        long,
        env = "SIDECAR_IMAGE",
        value_name = "IMAGE",
        value_parser = NonEmptyStringValueParser::new(),
        default_value_t = default_sidecar_image()
    )]
    pub sidecar_image: String,

    /// imagePullPolicy of the added containers [default: Kubernetes' own]
    #[arg(
        long,
        env = "SIDECAR_IMAGE_PULL_POLICY",
        value_name = "POLICY",
        value_parser = ["Always", "IfNotPresent", "Never"]
    )]
    pub sidecar_image_pull_policy: Option<String>,
}

impl SidecarArgs {
    pub fn options(&self) -> SidecarOptions {
        SidecarOptions {
            image_pull_policy: self.sidecar_image_pull_policy.clone(),
            ..SidecarOptions::new(&self.sidecar_image)
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// PEM certificate chain the webhook serves (re-read when it changes)
    #[arg(long, env = "SIDECAR_INJECTOR_TLS_CERT", value_name = "FILE")]
    pub tls_cert: PathBuf,

    /// PEM private key of that certificate (re-read when it changes)
    #[arg(long, env = "SIDECAR_INJECTOR_TLS_KEY", value_name = "FILE")]
    pub tls_key: PathBuf,

    /// Address to listen on
    #[arg(
        long,
        env = "SIDECAR_INJECTOR_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub sidecar: SidecarArgs,

    /// Layout of pods whose sidecar.speedscale.com/native-sidecar is "auto" or absent: auto asks the API
    /// server for its version and the nodes' kubelet versions (every 5 minutes) and uses the native layout
    /// when all are 1.29 or later, else classic; true or false decides for every such pod
    #[arg(
        long,
        env = "SIDECAR_NATIVE_SIDECAR",
        value_name = "auto|true|false",
        default_value = "auto",
        value_parser = ["auto", "true", "false"]
    )]
    pub native_sidecar: String,

    /// API server to ask for the versions (auto only) [default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT]
    #[arg(
        long,
        env = "SIDECAR_KUBE_API_SERVER",
        value_name = "https://HOST[:PORT]"
    )]
    pub kube_api_server: Option<String>,

    /// Bearer token for the API server, re-read at every ask (auto only)
    #[arg(
        long,
        env = "SIDECAR_KUBE_TOKEN_FILE",
        value_name = "FILE",
        default_value_os_t = PathBuf::from(SERVICE_ACCOUNT_DIR).join("token")
    )]
    pub kube_token_file: PathBuf,

    /// PEM CA bundle the API server's certificate must chain to (auto only)
    #[arg(
        long,
        env = "SIDECAR_KUBE_CA_FILE",
        value_name = "FILE",
        default_value_os_t = PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt")
    )]
    pub kube_ca_file: PathBuf,
}

impl ServeArgs {
    pub fn settings(&self) -> ServerSettings {
        let (auto_layout, source) = match self.native_sidecar.as_str() {
            "true" | "false" => (
                fixed_layout("serve", self.native_sidecar == "true"),
                AutoLayoutSource::Fixed,
            ),
            _ => (
                // Replaced per admission by what the API server said (see `server::auto_layout`).
                SidecarOptions::new("").auto_layout,
                AutoLayoutSource::AskCluster(ClusterAccess {
                    api_server: self.kube_api_server.clone(),
                    token_file: self.kube_token_file.clone(),
                    ca_file: self.kube_ca_file.clone(),
                    ..ClusterAccess::in_cluster()
                }),
            ),
        };
        ServerSettings {
            auto_layout: source,
            ..ServerSettings::new(
                self.listen,
                &self.tls_cert,
                &self.tls_key,
                SidecarOptions {
                    auto_layout,
                    ..self.sidecar.options()
                },
            )
        }
    }
}

/// The layout `--native-sidecar true|false` of `command` gives pods that leave it to the injector.
fn fixed_layout(command: &str, native_sidecar: bool) -> AutoLayout {
    let layout = if native_sidecar {
        SidecarLayout::Native
    } else {
        SidecarLayout::Classic
    };
    AutoLayout::new(
        layout,
        format!("sidecar-injector {command} --native-sidecar {native_sidecar}"),
    )
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifest to read (multi-document YAML), `-` for stdin
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub filename: PathBuf,

    #[command(flatten)]
    pub sidecar: SidecarArgs,

    /// Layout of pods whose sidecar.speedscale.com/native-sidecar is "auto" or absent: true puts the
    /// sidecar among the init containers with restartPolicy Always (Kubernetes 1.29 or later), false
    /// makes it the first container
    #[arg(
        long,
        env = "SIDECAR_NATIVE_SIDECAR",
        value_name = "true|false",
        default_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub native_sidecar: bool,

    /// Rewrite the targetPort of the input's Services that send callers of an injected reverse or dual
    /// pod straight to the app, past the sidecar, to the sidecar's inbound port (without it they are only
    /// reported)
    #[arg(long)]
    pub retarget_services: bool,
}

impl InjectArgs {
    /// Reads the manifest, writes it injected to stdout. On error, one line on stderr and exit 1.
    pub fn run(&self) -> ExitCode {
        let options = SidecarOptions {
            auto_layout: fixed_layout("inject", self.native_sidecar),
            ..self.sidecar.options()
        };
        let mut input: Box<dyn Read> = if self.filename.as_os_str() == "-" {
            Box::new(io::stdin().lock())
        } else {
            match File::open(&self.filename) {
                Ok(file) => Box::new(file),
                Err(e) => {
                    return fail(format_args!("cannot read {}: {e}", self.filename.display()))
                }
            }
        };
        let mut output = io::stdout().lock();
        let offline = crate::offline::OfflineOptions {
            retarget_services: self.retarget_services,
        };
        match crate::offline::inject_with(&mut input, &mut output, &options, &offline)
            .and_then(|report| output.flush().map(|()| report).map_err(Into::into))
        {
            Ok(report) => {
                // On stderr, so stdout stays the manifest for `| kubectl apply -f -`.
                for line in &report.injected {
                    eprintln!("sidecar-injector: injected {line}");
                }
                for line in &report.retargeted {
                    eprintln!("sidecar-injector: retargeted {line}");
                }
                for line in &report.warnings {
                    eprintln!("sidecar-injector: warning: {line}");
                }
                if report.injected.is_empty() {
                    eprintln!(
                        "sidecar-injector: injected nothing: no pod or pod template is annotated sidecar.speedscale.com/inject: \"true\" (or every one already has the sidecar)"
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(format_args!("{e:#}")),
        }
    }
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the injector's Service
    #[arg(long, value_name = "NAME")]
    pub service: String,

    /// Namespace of the injector's Service
    #[arg(long, value_name = "NS")]
    pub namespace: String,

    /// Directory to write ca.crt, tls.crt and tls.key to (created if missing; existing files are replaced)
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// Validity of the CA and the certificate, in days
    #[arg(
        long,
        value_name = "N",
        default_value_t = 365,
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    pub days: u32,

    /// A further DNS name or IP address for the certificate (repeatable), e.g. to run the webhook outside
    /// the cluster
    #[arg(long, value_name = "NAME|IP")]
    pub extra_san: Vec<String>,
}

impl CertsArgs {
    /// Writes the files and prints the base64 caBundle as the only line on stdout.
    pub fn run(&self) -> ExitCode {
        let mut names = match certs::service_dns_names(&self.service, &self.namespace) {
            Ok(names) => names,
            Err(e) => {
                eprintln!("sidecar-injector: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
        };
        names.extend(self.extra_san.iter().cloned());
        let minted = match certs::mint(&names, self.days) {
            Ok(minted) => minted,
            Err(e) => return fail(e),
        };
        if let Err(e) = minted.write(&self.out_dir) {
            return fail(e);
        }
        let mut stdout = io::stdout().lock();
        match writeln!(stdout, "{}", minted.ca_bundle()).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format_args!("cannot write to stdout: {e}")),
        }
    }
}

/// Prints the error as one line (whatever line breaks its sources carry) and returns exit status 1.
fn fail(error: impl std::fmt::Display) -> ExitCode {
    let text = error.to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    eprintln!("sidecar-injector: {}", line.join(" "));
    ExitCode::FAILURE
}
