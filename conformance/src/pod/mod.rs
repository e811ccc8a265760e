//! One Kubernetes pod, as containers: the upstream holds the network namespace (`--network none`, so
//! loopback only) and the sidecar and the client join it with `container:<id>`, exactly as a pod's
//! containers share one. Containers are started through testcontainers, labelled, and removed when the
//! pod is dropped, even when a cell fails; testcontainers' watchdog removes them on Ctrl-C.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::Container;
use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::core::{AccessMode, ExecCommand, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use crate::pki;
use crate::upstream::READY_LINE;
use sidecar_injector::containers::WAIT_READY;

/// The mock column: recording, stopping the upstream, and the same requests answered by the mock.
mod mocked;
/// Pods on the test's own network, for transparent mode: init containers, a native sidecar, and
/// containers outside the pod.
mod network;
/// Running a cell's client in a pod and judging the exchange, on top of the containers below.
mod run;
pub use mocked::mock_run_in_pod;
pub use network::{transparent_run_in_pod, NETWORK};
pub use run::{container, exchange, run_in_pod, test_pki, upstream_args};

/// Label on every container of the suite, so leftovers of a killed run can be found
/// (`docker ps -a --filter label=sidecar-conformance`); its value names the cell.
pub const LABEL: &str = "sidecar-conformance";
/// The test process that started the container: leftovers are only those whose process is gone, so
/// cleaning up never touches a run still going on the same engine.
pub const PID_LABEL: &str = "sidecar-conformance.pid";

/// The sidecar logs this once every listener is bound.
const SIDECAR_READY_LINE: &str = "ready: every listener is bound";

pub struct Pod {
    name: String,
    dir: PathBuf,
    // Field order is drop order: the joining containers go before the namespace holder.
    sidecar: Option<ContainerAsync<GenericImage>>,
    /// Containers besides the sidecar and the holder: a serving app container in the pod, the upstream
    /// outside it on the test network.
    others: Vec<ContainerAsync<GenericImage>>,
    /// The container that holds the pod's network namespace: the upstream itself in the loopback-only
    /// pods, a container doing nothing in the pods on the test network.
    holder: ContainerAsync<GenericImage>,
    /// Which of `others` is the upstream (`None`: the holder is).
    upstream: Option<usize>,
    /// Where the client runs and the hosts file it gets: by default in the pod, with the pod's own.
    client_network: Option<String>,
    client_hosts: Option<PathBuf>,
    /// How the sidecar exited, once stopped.
    sidecar_exit_code: Option<i64>,
    /// The pod's termination grace period: how long the sidecar has after SIGTERM.
    grace_seconds: i32,
}

/// The grace period of the loopback-only pods' sidecars (their specs carry none).
const DEFAULT_GRACE_SECONDS: i32 = 10;

/// The finished client container.
pub struct ClientRun {
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

fn image(tag: &str) -> GenericImage {
    let (name, version) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    GenericImage::new(name, version)
}

fn read_only(host: &Path, container: &str) -> Mount {
    Mount::bind_mount(host.to_string_lossy(), container).with_access_mode(AccessMode::ReadOnly)
}

impl Pod {
    /// Starts the upstream, which holds the pod's network namespace, and waits until it listens.
    /// `dir` keeps the pod's files (annotations, hosts, capture, logs); `pki_dir` is mounted read-only.
    pub async fn start(
        name: &str,
        dir: &Path,
        pki_dir: &Path,
        upstream_image: &str,
        upstream_args: Vec<String>,
    ) -> anyhow::Result<Pod> {
        fs::create_dir_all(dir)?;
        let upstream = image(upstream_image)
            .with_wait_for(WaitFor::message_on_stdout(READY_LINE))
            .with_network("none")
            .with_label(LABEL, name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_mount(read_only(pki_dir, pki::DIR_IN_CONTAINER))
            .with_cmd(upstream_args)
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("{name}: the upstream container did not start"))?;
        Ok(Pod::around(name, dir, upstream))
    }

    /// A pod around the container that holds its network namespace, nothing else started yet.
    fn around(name: &str, dir: &Path, holder: ContainerAsync<GenericImage>) -> Pod {
        Pod {
            name: name.to_owned(),
            dir: dir.to_path_buf(),
            sidecar: None,
            others: Vec::new(),
            holder,
            upstream: None,
            client_network: None,
            client_hosts: None,
            sidecar_exit_code: None,
            grace_seconds: DEFAULT_GRACE_SECONDS,
        }
    }

    /// Starts a pod whose container (of `holder_image`, on `network`) only holds the network namespace,
    /// as the kubelet's pause container does.
    async fn start_holding(
        name: &str,
        dir: &Path,
        holder_image: &str,
        network: &str,
    ) -> anyhow::Result<Pod> {
        fs::create_dir_all(dir)?;
        let holder = image(holder_image)
            .with_network(network)
            .with_label(LABEL, name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_cmd(["sleep", "infinity"])
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("{name}: the pod's holder container did not start"))?;
        Ok(Pod::around(name, dir, holder))
    }

    /// Starts a loopback-only pod whose upstream can be stopped while the pod lives on: a container that
    /// only holds the network namespace (as the kubelet's pause container does), and the upstream joining
    /// it, ready once it listens. The mock column records with the upstream up, then stops it.
    pub async fn start_with_stoppable_upstream(
        name: &str,
        dir: &Path,
        pki_dir: &Path,
        upstream_image: &str,
        upstream_args: Vec<String>,
    ) -> anyhow::Result<Pod> {
        let mut pod = Pod::start_holding(name, dir, upstream_image, "none").await?;
        let upstream = image(upstream_image)
            .with_wait_for(WaitFor::message_on_stdout(READY_LINE))
            .with_network(pod.network())
            .with_label(LABEL, name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_mount(read_only(pki_dir, pki::DIR_IN_CONTAINER))
            .with_cmd(upstream_args)
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("{name}: the upstream container did not start"))?;
        pod.upstream = Some(pod.others.len());
        pod.others.push(upstream);
        Ok(pod)
    }

    /// Stops and removes the upstream of a pod from [`Pod::start_with_stoppable_upstream`], keeping what
    /// it logged in `upstream.stdout`: nothing in the pod answers its ports any more.
    pub async fn stop_upstream(&mut self) -> anyhow::Result<()> {
        let index = self
            .upstream
            .context("the upstream holds the pod's network namespace and cannot be stopped")?;
        self.upstream_stdout().await?;
        let upstream = self.others.remove(index);
        self.upstream = None;
        upstream.stop_with_timeout(Some(0)).await?;
        upstream.rm().await?;
        Ok(())
    }

    fn network(&self) -> String {
        format!("container:{}", self.holder.id())
    }

    fn upstream_container(&self) -> &ContainerAsync<GenericImage> {
        self.upstream
            .and_then(|i| self.others.get(i))
            .unwrap_or(&self.holder)
    }

    /// Starts the sidecar exactly as a container spec says (the one the injector adds to a pod): its
    /// image, args, environment, user, read-only root filesystem and volume mounts (read-only where the
    /// spec says so). A volume named in `provided` is that host directory, as a Secret or a ConfigMap the
    /// cell filled; every other volume is a fresh directory of the pod's own ([`Pod::volume_dir`]), as an
    /// `emptyDir` would be. The mount at `capture_mount` is where the capture file lands, read back by
    /// [`Pod::stop_sidecar`].
    pub async fn start_sidecar_container(
        &mut self,
        container: &Container,
        capture_mount: &str,
        hosts: &[(&str, &str)],
        provided: &[(String, PathBuf)],
    ) -> anyhow::Result<()> {
        let tag = container
            .image
            .as_deref()
            .context("the sidecar container names no image")?;
        let hosts_path = self.write_hosts(hosts)?;
        let mut request = image(tag)
            .with_wait_for(WaitFor::message_on_stderr(SIDECAR_READY_LINE))
            .with_network(self.network())
            .with_label(LABEL, &self.name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_mount(read_only(&hosts_path, "/etc/hosts"))
            .with_startup_timeout(Duration::from_secs(30));
        if let Some(args) = &container.args {
            request = request.with_cmd(args.clone());
        }
        for var in container.env.iter().flatten() {
            let value = var
                .value
                .clone()
                .with_context(|| format!("env {} has no literal value", var.name))?;
            request = request.with_env_var(&var.name, value);
        }
        if let Some(security) = &container.security_context {
            if let Some(uid) = security.run_as_user {
                let gid = security.run_as_group.unwrap_or(uid);
                request = request.with_user(format!("{uid}:{gid}"));
            }
            if security.read_only_root_filesystem == Some(true) {
                request = request.with_readonly_rootfs(true);
            }
        }
        for mount in container.volume_mounts.iter().flatten() {
            let given = provided.iter().find(|(name, _)| *name == mount.name);
            let host = match given {
                Some((_, dir)) => dir.clone(),
                None if mount.mount_path == capture_mount => self.dir.join("capture"),
                None => self.volume_dir(&mount.name),
            };
            if given.is_none() {
                fs::create_dir_all(&host)?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o777))?;
            }
            let bind = Mount::bind_mount(host.to_string_lossy(), mount.mount_path.as_str());
            request = request.with_mount(if mount.read_only == Some(true) {
                bind.with_access_mode(AccessMode::ReadOnly)
            } else {
                bind
            });
        }
        let sidecar = request
            .start()
            .await
            .with_context(|| format!("{}: the sidecar container did not start", self.name))?;
        // The postStart hook runs inside the container as the kubelet runs it, and must succeed.
        let hook = container
            .lifecycle
            .as_ref()
            .and_then(|lifecycle| lifecycle.post_start.as_ref())
            .and_then(|handler| handler.exec.as_ref())
            .and_then(|exec| exec.command.clone());
        // A native sidecar's startupProbe (GET /readyz on the admin port) holds back the next container
        // until it passes; `wait-ready` in the container asks the same endpoint.
        let hook = hook.or_else(|| {
            container
                .startup_probe
                .as_ref()
                .map(|_| WAIT_READY.iter().map(|arg| (*arg).to_owned()).collect())
        });
        if let Some(command) = hook {
            let mut run = sidecar.exec(ExecCommand::new(command.clone())).await?;
            let stderr = String::from_utf8_lossy(&run.stderr_to_vec().await?).into_owned();
            let code = run.exit_code().await?;
            if code != Some(0) {
                bail!(
                    "{}: the sidecar's postStart hook {command:?} exited with {code:?}: {}",
                    self.name,
                    stderr.trim()
                );
            }
        }
        self.sidecar = Some(sidecar);
        Ok(())
    }

    /// The host directory behind the sidecar's volume `name` (an `emptyDir`), to share it with a client.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    fn write_hosts(&self, hosts: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
        self.write_hosts_file("hosts", hosts)
    }

    fn write_hosts_file(&self, file: &str, hosts: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(file);
        let mut hosts_file = String::from("127.0.0.1 localhost\n");
        for (address, name) in hosts {
            hosts_file.push_str(&format!("{address} {name}\n"));
        }
        fs::write(&path, hosts_file)?;
        Ok(path)
    }

    /// Runs a client container in the pod to completion, with `mounts` (host directory, path in the
    /// container) read-only, and returns its output.
    pub async fn run_client(
        &self,
        image_tag: &str,
        mounts: &[(PathBuf, &str)],
        command: Vec<String>,
        env: &[(String, String)],
    ) -> anyhow::Result<ClientRun> {
        let mut request = image(image_tag)
            .with_wait_for(WaitFor::exit(ExitWaitStrategy::new()))
            .with_network(
                self.client_network
                    .clone()
                    .unwrap_or_else(|| self.network()),
            )
            .with_label(LABEL, &self.name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_cmd(command)
            .with_startup_timeout(Duration::from_secs(120));
        if let Some(hosts) = &self.client_hosts {
            request = request.with_mount(read_only(hosts, "/etc/hosts"));
        }
        for (host, container) in mounts {
            request = request.with_mount(read_only(host, container));
        }
        for (name, value) in env {
            request = request.with_env_var(name, value);
        }
        let run = run_to_completion(request)
            .await
            .with_context(|| format!("{}: the client container did not run", self.name))?;
        fs::write(self.dir.join("client.stdout"), &run.stdout)?;
        fs::write(self.dir.join("client.stderr"), &run.stderr)?;
        Ok(run)
    }

    /// Stops the sidecar as Kubernetes does (SIGTERM), so every capture record is flushed, and returns
    /// the capture file's contents.
    /// Its exit code is then [`Pod::sidecar_exit_code`]: SIGKILL (137) if it had not exited within the
    /// pod's grace period.
    pub async fn stop_sidecar(&mut self) -> anyhow::Result<String> {
        if let Some(sidecar) = self.sidecar.take() {
            sidecar.stop_with_timeout(Some(self.grace_seconds)).await?;
            self.sidecar_exit_code = sidecar.exit_code().await?;
            let log = String::from_utf8_lossy(&sidecar.stderr_to_vec().await?).into_owned();
            fs::write(self.dir.join("sidecar.stderr"), log)?;
            sidecar.rm().await?;
        }
        let capture = self.dir.join("capture/capture.jsonl");
        match fs::read_to_string(&capture) {
            Ok(records) => Ok(records),
            // The sidecar never wrote a record.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", capture.display())),
        }
    }

    /// The stopped sidecar's exit code (137 when it had to be killed).
    pub fn sidecar_exit_code(&self) -> Option<i64> {
        self.sidecar_exit_code
    }

    /// The pod's `terminationGracePeriodSeconds`: how long the sidecar may take after SIGTERM.
    pub fn set_grace_seconds(&mut self, seconds: i32) {
        self.grace_seconds = seconds;
    }

    pub fn grace_seconds(&self) -> i32 {
        self.grace_seconds
    }

    /// Everything the upstream printed so far: one JSON line per request it saw.
    pub async fn upstream_stdout(&self) -> anyhow::Result<String> {
        let stdout =
            String::from_utf8_lossy(&self.upstream_container().stdout_to_vec().await?).into_owned();
        fs::write(self.dir.join("upstream.stdout"), &stdout)?;
        Ok(stdout)
    }
}

/// Runs a one-off container of a tool to completion, with no network and the given files mounted
/// read-only (`sidecar-injector inject`, say), and returns its output.
pub async fn run_tool(
    name: &str,
    image_tag: &str,
    command: Vec<String>,
    mounts: &[(&Path, &str)],
) -> anyhow::Result<ClientRun> {
    let mut request = image(image_tag)
        .with_wait_for(WaitFor::exit(ExitWaitStrategy::new()))
        .with_network("none")
        .with_label(LABEL, name)
        .with_label(PID_LABEL, std::process::id().to_string())
        .with_cmd(command)
        .with_startup_timeout(Duration::from_secs(60));
    for (host, container) in mounts {
        request = request.with_mount(read_only(host, container));
    }
    run_to_completion(request)
        .await
        .with_context(|| format!("{name}: the {image_tag} container did not run"))
}

/// Starts a container whose readiness is its exit, collects its output, and removes it.
async fn run_to_completion(request: ContainerRequest<GenericImage>) -> anyhow::Result<ClientRun> {
    let container = request.start().await?;
    let run = ClientRun {
        exit_code: container.exit_code().await?,
        stdout: String::from_utf8_lossy(&container.stdout_to_vec().await?).into_owned(),
        stderr: String::from_utf8_lossy(&container.stderr_to_vec().await?).into_owned(),
    };
    container.rm().await?;
    Ok(run)
}
