//! Pods on the test's own network, for transparent mode. A loopback-only pod cannot show a redirect:
//! transparent mode leaves traffic on `lo` alone, because it stays inside the pod. So these pods have an
//! address on a Docker network the suite creates (`internal`, and with no address of the host on its
//! bridge, so nothing on it can reach the host or beyond), and the upstream of the app's own requests,
//! and the callers of the app, are containers of their own on that network, at addresses iptables
//! redirects. The pod is started as the kubelet starts the injector's output: a container holding the
//! network namespace (the kubelet's pause container), the init containers in order, each to completion,
//! except a native sidecar (`restartPolicy: Always`), which keeps running once its startupProbe passes,
//! then the app.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::core::v1::{Container, Pod as PodManifest};
use sidecar_injector::containers::{CAPTURE_DIR, SIDECAR_NAME};
use testcontainers::core::wait::ExitWaitStrategy;
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;

use super::{image, read_only, run_to_completion, test_pki, upstream_args, Pod, LABEL, PID_LABEL};
use crate::clients::{Client, Setup, Side, TRUST_DIR_IN_CONTAINER};
use crate::modes::Mode;
use crate::planned::{planned_requests, APP_HOST, UPSTREAM_HOST};
use crate::upstream::READY_LINE;
use crate::{images, pki, tls_out};

/// The suite's network. Created on first use and kept, like the images; every container on it carries
/// the suite's label and is removed with its cell.
pub const NETWORK: &str = "sidecar-conformance";

/// Creates the network once per process, unless it exists (another run may have made it).
fn ensure_network() -> anyhow::Result<()> {
    static NETWORK_READY: OnceLock<Result<(), String>> = OnceLock::new();
    NETWORK_READY
        .get_or_init(|| create_network().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

fn create_network() -> anyhow::Result<()> {
    let exists = || {
        Command::new("docker")
            .args(["network", "inspect", NETWORK])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if exists() {
        return Ok(());
    }
    let output = Command::new("docker")
        .args(["network", "create", "--internal"])
        // No address of the host on the bridge: containers reach one another and nothing else, although
        // an engine without iptables (scripts/docker-engine.sh) cannot enforce `--internal` itself.
        .args(["--opt", "com.docker.network.bridge.inhibit_ipv4=true"])
        .args(["--label", &format!("{LABEL}=network"), NETWORK])
        .output()
        .context("cannot run docker")?;
    // Another process may have created it in between.
    if !output.status.success() && !exists() {
        bail!(
            "docker network create {NETWORK} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A container's address on the suite's network.
fn address_of(id: &str) -> anyhow::Result<String> {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}");
    let output = Command::new("docker")
        .args(["inspect", "--format", &format, id])
        .output()
        .context("cannot run docker")?;
    let address = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || address.is_empty() {
        bail!(
            "container {id} has no address on {NETWORK}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(address)
}

impl Pod {
    /// Starts a pod on the suite's network: a container (of `holder_image`) that only holds the network
    /// namespace, as the kubelet's pause container does.
    pub async fn start_on_network(
        name: &str,
        dir: &Path,
        holder_image: &str,
    ) -> anyhow::Result<Pod> {
        ensure_network()?;
        Pod::start_holding(name, dir, holder_image, NETWORK).await
    }

    /// The pod's address on the suite's network.
    pub fn address(&self) -> anyhow::Result<String> {
        address_of(self.holder.id())
    }

    /// Starts the upstream in a container of its own on the suite's network (outside the pod), and
    /// returns its address.
    pub async fn start_upstream_outside(
        &mut self,
        upstream_image: &str,
        args: Vec<String>,
    ) -> anyhow::Result<String> {
        let upstream = image(upstream_image)
            .with_wait_for(WaitFor::message_on_stdout(READY_LINE))
            .with_network(NETWORK)
            .with_label(LABEL, &self.name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_mount(read_only(test_pki()?, pki::DIR_IN_CONTAINER))
            .with_cmd(args)
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("{}: the upstream container did not start", self.name))?;
        let address = address_of(upstream.id())?;
        self.upstream = Some(self.others.len());
        self.others.push(upstream);
        Ok(address)
    }

    /// Starts the upstream as the pod's app container, serving in the pod's network namespace.
    pub async fn start_serving_app(
        &mut self,
        upstream_image: &str,
        args: Vec<String>,
    ) -> anyhow::Result<()> {
        let app = image(upstream_image)
            .with_wait_for(WaitFor::message_on_stdout(READY_LINE))
            .with_network(self.network())
            .with_label(LABEL, &self.name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_cmd(args)
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("{}: the app container did not start", self.name))?;
        self.upstream = Some(self.others.len());
        self.others.push(app);
        Ok(())
    }

    /// Runs an init container of the pod to completion, as its spec says: image, args, environment,
    /// user, capabilities (dropped and added), read-only root filesystem, no privilege escalation, and
    /// each volume a directory of the pod's own (an `emptyDir`). It must exit 0.
    pub async fn run_init_container(&self, container: &Container) -> anyhow::Result<()> {
        let tag = container
            .image
            .as_deref()
            .with_context(|| format!("init container {} names no image", container.name))?;
        let mut request = image(tag)
            .with_wait_for(WaitFor::exit(ExitWaitStrategy::new()))
            .with_network(self.network())
            .with_label(LABEL, &self.name)
            .with_label(PID_LABEL, std::process::id().to_string())
            .with_startup_timeout(Duration::from_secs(60));
        if container.command.is_some() {
            bail!(
                "init container {}: the harness runs images with their own entrypoint",
                container.name
            );
        }
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
            if security.allow_privilege_escalation == Some(false) {
                request = request.with_security_opt("no-new-privileges");
            }
            if let Some(capabilities) = &security.capabilities {
                for dropped in capabilities.drop.iter().flatten() {
                    request = request.with_cap_drop(dropped);
                }
                for added in capabilities.add.iter().flatten() {
                    request = request.with_cap_add(added);
                }
            }
        }
        for mount in container.volume_mounts.iter().flatten() {
            let host = self.volume_dir(&mount.name);
            fs::create_dir_all(&host)?;
            fs::set_permissions(&host, fs::Permissions::from_mode(0o777))?;
            request = request.with_mount(Mount::bind_mount(
                host.to_string_lossy(),
                mount.mount_path.as_str(),
            ));
        }
        let run = run_to_completion(request).await.with_context(|| {
            format!(
                "{}: init container {} did not run",
                self.name, container.name
            )
        })?;
        fs::write(
            self.dir.join(format!("{}.log", container.name)),
            format!("{}{}", run.stdout, run.stderr),
        )?;
        if run.exit_code != Some(0) {
            bail!(
                "{}: init container {} exited with {:?}: {}",
                self.name,
                container.name,
                run.exit_code,
                run.stderr.trim()
            );
        }
        Ok(())
    }

    /// Clients run in the pod (they are its app container), with `hosts` as their /etc/hosts entries.
    pub fn clients_in_pod(&mut self, hosts: &[(&str, &str)]) -> anyhow::Result<()> {
        self.client_network = None;
        self.client_hosts = Some(self.write_hosts_file("client-hosts", hosts)?);
        Ok(())
    }

    /// Clients run outside the pod, each in a container of its own on the suite's network (callers of
    /// the app), with `hosts` as their /etc/hosts entries.
    pub fn clients_outside(&mut self, hosts: &[(&str, &str)]) -> anyhow::Result<()> {
        self.client_network = Some(NETWORK.to_owned());
        self.client_hosts = Some(self.write_hosts_file("client-hosts", hosts)?);
        Ok(())
    }
}

/// The injector's sidecar container, wherever the layout put it (a native sidecar among the init
/// containers, or the first of the containers).
fn sidecar_spec(patched: &PodManifest) -> anyhow::Result<&Container> {
    let spec = patched
        .spec
        .as_ref()
        .context("the patched pod has no spec")?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .find(|c| c.name == SIDECAR_NAME)
        .context("the patched pod has no sidecar container")
}

/// Starts a transparent pod as the kubelet starts the injector's output `patched` (the holder, then
/// each init container in order: the iptables init container to completion, the native sidecar until
/// its startupProbe passes), with the upstream outside it (the app's own requests) or the upstream as
/// its app (callers), and runs the client's requests with `setup`; returns what fell short, as
/// [`super::exchange`] does.
pub async fn transparent_run_in_pod(
    name: &str,
    dir: &Path,
    patched: &PodManifest,
    client: &Client,
    mode: &Mode,
    setup: Setup,
) -> anyhow::Result<Vec<String>> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let mut sidecar = sidecar_spec(patched)?.clone();
    let tls_out = if mode.tls_out {
        Some(tls_out::prepare(patched, &mut sidecar, dir, test_pki()?)?)
    } else {
        None
    };
    let mut pod = Pod::start_on_network(name, dir, &images.upstream).await?;
    let spec = patched
        .spec
        .as_ref()
        .context("the patched pod has no spec")?;
    // Kubernetes' default when the pod sets none.
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    pod.set_grace_seconds(i32::try_from(grace).context("terminationGracePeriodSeconds")?);
    let pod_address = pod.address()?;
    let sidecar_hosts = match client.side {
        Side::Outbound => {
            let args = listening_on_network(upstream_args(Side::Outbound, mode.app_port));
            let upstream = pod.start_upstream_outside(&images.upstream, args).await?;
            pod.clients_in_pod(&[(&upstream, UPSTREAM_HOST)])?;
            vec![(upstream, UPSTREAM_HOST)]
        }
        Side::Inbound => {
            pod.clients_outside(&[(&pod_address, APP_HOST)])?;
            Vec::new()
        }
    };
    let sidecar_hosts: Vec<(&str, &str)> = sidecar_hosts
        .iter()
        .map(|(address, host)| (address.as_str(), *host))
        .collect();
    let provided = tls_out
        .as_ref()
        .map(|volumes| volumes.provided.clone())
        .unwrap_or_default();
    let spec = patched
        .spec
        .as_ref()
        .context("the patched pod has no spec")?;
    for init in spec.init_containers.iter().flatten() {
        if init.name == SIDECAR_NAME {
            pod.start_sidecar_container(&sidecar, CAPTURE_DIR, &sidecar_hosts, &provided)
                .await?;
        } else {
            pod.run_init_container(init).await?;
        }
    }
    if pod.sidecar.is_none() {
        bail!("{name}: the injector's pod has no native sidecar among its init containers");
    }
    if client.side == Side::Inbound {
        let args = listening_on_network(upstream_args(Side::Inbound, mode.app_port));
        pod.start_serving_app(&images.upstream, args).await?;
    }
    let trust_mount = match &tls_out {
        Some(volumes) => (
            pod.volume_dir(&volumes.trust_volume),
            TRUST_DIR_IN_CONTAINER,
        ),
        None => (test_pki()?.clone(), pki::DIR_IN_CONTAINER),
    };
    let requests = planned_requests(client, mode, 0);
    let mut problems =
        super::exchange(&mut pod, client, mode, &requests, &[trust_mount], setup).await?;
    // The sidecar got SIGTERM once the client was done, as the kubelet sends it when the app's
    // containers have ended; it must have exited cleanly within the grace period (else SIGKILL, 137).
    if pod.sidecar_exit_code() != Some(0) {
        problems.push(format!(
            "the sidecar exited with {:?} after SIGTERM, not 0 within the pod's grace period of {} s",
            pod.sidecar_exit_code(),
            pod.grace_seconds()
        ));
    }
    Ok(problems)
}

/// The upstream's arguments, listening on every address rather than loopback alone.
fn listening_on_network(mut args: Vec<String>) -> Vec<String> {
    args.splice(1..1, ["--listen-address".to_owned(), "0.0.0.0".to_owned()]);
    args
}
