//! The mock column in one pod: the client's requests recorded first, with the upstream up; then the
//! upstream stopped, the sidecar restarted with the injector's mock settings on that recording (the
//! same pod otherwise), and the same client run again, every answer of which must come from the mock.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::{Container, Pod as PodManifest};
use sidecar_injector::containers::{CAPTURE_DIR, SIDECAR_NAME};
use sidecar_injector::mock::MOCK_VOLUME;

use super::run::{container, exchange, exit_problems, run_requests, test_pki, upstream_args};
use super::Pod;
use crate::clients::{Client, Setup, TRUST_DIR_IN_CONTAINER};
use crate::mock_answers::MockRun;
use crate::modes::Mode;
use crate::planned::{client_lines, planned_requests, UPSTREAM_HOST};
use crate::{expectations, images, tls_out};

/// What the recording phase leaves in `recording/` of the cell's directory, moved aside so the mock
/// phase's files take their usual names.
const RECORDING_FILES: [&str; 4] = [
    "client.stdout",
    "client.stderr",
    "sidecar.stderr",
    "upstream.stdout",
];

/// Runs a mock cell: `recording` is the pod the injector makes of the column's annotations without the
/// mock ones, `mocking` the pod it makes of all of them (the ConfigMap volume and `PROXY_MOCK` added).
/// Returns what fell short: the recording's problems as in every cell (then there is nothing to mock, and
/// the mock phase does not run), else the mock phase's.
pub async fn mock_run_in_pod(
    name: &str,
    dir: &Path,
    recording: &PodManifest,
    mocking: &PodManifest,
    client: &Client,
    mode: &Mode,
    setup: Setup,
) -> anyhow::Result<Vec<String>> {
    // Without tls-out the mock cannot answer the HTTPS GET (a CONNECT tunnel of opaque TLS), so the
    // column is only defined with it, and the pods are set up for it.
    anyhow::ensure!(
        mode.tls_out,
        "{}: a mock column needs tls-out, to answer the HTTPS GET",
        mode.id
    );
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let port = expectations::sidecar_port(client, mode)
        .with_context(|| format!("{} has no listener for {}", mode.id, client.id))?
        .port;
    let mut recorder = container(recording, SIDECAR_NAME)?.clone();
    let mut mocker = container(mocking, SIDECAR_NAME)?.clone();
    let recorder_tls = tls_out::prepare(recording, &mut recorder, dir, test_pki()?)?;
    // The mock phase's copy of the capture CA's Secret goes to a directory of its own: the recording's
    // copy is read-only, as the kubelet projects it.
    let mocker_tls = tls_out::prepare(mocking, &mut mocker, &dir.join("mocked"), test_pki()?)?;
    let mut pod = Pod::start_with_stoppable_upstream(
        name,
        dir,
        test_pki()?,
        &images.upstream,
        upstream_args(client.side, mode.app_port),
    )
    .await?;
    let hosts = [("127.0.0.1", UPSTREAM_HOST)];
    let requests = planned_requests(client, mode, port);

    // 1. Record, as the tls-out column does: every check of a cell applies.
    pod.start_sidecar_container(&recorder, CAPTURE_DIR, &hosts, &recorder_tls.provided)
        .await?;
    let trust = [(
        pod.volume_dir(&recorder_tls.trust_volume),
        TRUST_DIR_IN_CONTAINER,
    )];
    let problems = exchange(&mut pod, client, mode, &requests, &trust, setup.clone()).await?;
    if !problems.is_empty() {
        return Ok(problems
            .into_iter()
            .map(|problem| format!("recording: {problem}"))
            .collect());
    }
    let recorded_lines = client_lines(&fs::read_to_string(dir.join("client.stdout"))?);

    // 2. Stop the upstream: from now on a request the mock does not answer finds nothing to reach.
    pod.stop_upstream().await?;
    move_recording_aside(dir)?;
    let capture = dir.join("capture").join(CAPTURE_FILE);
    let recorded_capture = fs::read_to_string(&capture)
        .with_context(|| format!("cannot read {}", capture.display()))?;
    // The mock phase's capture starts empty, holding only what the mock answered.
    fs::remove_file(&capture)?;
    let config_map = project_config_map(mocking, &mocker, dir, &recorded_capture)?;

    // 3. The same pod's sidecar again, now with the mock settings, and the same client.
    let mut provided = mocker_tls.provided.clone();
    provided.push(config_map);
    pod.start_sidecar_container(&mocker, CAPTURE_DIR, &hosts, &provided)
        .await?;
    let trust = [(
        pod.volume_dir(&mocker_tls.trust_volume),
        TRUST_DIR_IN_CONTAINER,
    )];
    let run = run_requests(&pod, client, &requests, &trust, setup).await?;
    let mocked_capture = pod.stop_sidecar().await?;
    let mut problems = exit_problems(&run);
    let mock_run = MockRun {
        recording: &recorded_capture,
        recorded_lines: &recorded_lines,
        capture: &mocked_capture,
    };
    problems.extend(mock_run.problems(&requests, &client_lines(&run.stdout)));
    Ok(problems
        .into_iter()
        .map(|problem| format!("mocked: {problem}"))
        .collect())
}

/// The capture file's name in the sidecar's capture directory.
const CAPTURE_FILE: &str = "capture.jsonl";

/// Moves the recording phase's logs into `recording/`.
fn move_recording_aside(dir: &Path) -> anyhow::Result<()> {
    let aside = dir.join("recording");
    fs::create_dir_all(&aside)?;
    for file in RECORDING_FILES {
        let from = dir.join(file);
        if from.exists() {
            fs::rename(&from, aside.join(file))
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
    }
    Ok(())
}

/// Fills the mock ConfigMap's volume as the kubelet projects it: the one key the volume names, holding
/// the recorded capture, with the volume's mode. Returns (volume, directory) for the sidecar's mounts.
fn project_config_map(
    mocking: &PodManifest,
    mocker: &Container,
    dir: &Path,
    recorded_capture: &str,
) -> anyhow::Result<(String, PathBuf)> {
    if !mocker
        .volume_mounts
        .iter()
        .flatten()
        .any(|mount| mount.name == MOCK_VOLUME)
    {
        anyhow::bail!("the injected mock sidecar does not mount the {MOCK_VOLUME} volume");
    }
    let source = mocking
        .spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .find(|volume| volume.name == MOCK_VOLUME)
        .and_then(|volume| volume.config_map.as_ref())
        .with_context(|| format!("the injected pod has no ConfigMap volume {MOCK_VOLUME}"))?;
    let key = source
        .items
        .iter()
        .flatten()
        .next()
        .with_context(|| format!("the {MOCK_VOLUME} volume names no key"))?;
    let mode = key.mode.or(source.default_mode).unwrap_or(0o644);
    let mode = u32::try_from(mode).with_context(|| format!("volume {MOCK_VOLUME}: mode {mode}"))?;
    let volume_dir = dir.join("configmaps").join(&source.name);
    fs::create_dir_all(&volume_dir)?;
    fs::set_permissions(&volume_dir, fs::Permissions::from_mode(0o755))?;
    let file = volume_dir.join(&key.path);
    fs::write(&file, recorded_capture)?;
    fs::set_permissions(&file, fs::Permissions::from_mode(mode))?;
    Ok((MOCK_VOLUME.to_owned(), volume_dir))
}
