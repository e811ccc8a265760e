//! One cell of the matrix: a pod running the sidecar in the column's mode, the client of the row sending
//! its requests, and the verdict: did every request get the upstream's exact answer, did the upstream see
//! exactly what the client sent, and did the sidecar record each exchange.

use anyhow::{anyhow, Context};
use sidecar_injector::containers::SidecarOptions;

use crate::clients::{Client, Trust};
use crate::injected::Layout;
use crate::modes::Mode;
use crate::pod::{mock_run_in_pod, run_in_pod, transparent_run_in_pod};
use crate::results::{CellResult, Outcome};
use crate::{expectations, images, injected, workspace};

/// Runs the cell and returns its result (written to the results directory too). An error means the
/// harness itself could not run the cell (an image or container failed), not that the client failed.
pub async fn run(client: &Client, mode: &Mode) -> anyhow::Result<CellResult> {
    let expected = expectations::expected(client, mode)
        .with_context(|| format!("{} has no cell in {}", client.id, mode.id))?;
    let port = expectations::sidecar_port(client, mode)
        .expect("a cell exists only where its port does")
        .port;
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let name = format!("{}__{}", client.id, mode.id);
    let dir = workspace::fresh_cell_dir(&name)?;
    let problems = if mode.transparent() {
        // The whole pod as the injector's image writes it: the iptables init container, the native
        // sidecar, and (with `configure-app`) the app's settings, which are then the client's only ones.
        let patched = injected::injected_by_image(
            &injected::workload(mode, false),
            &dir,
            images,
            Layout::Native,
        )
        .await?;
        let configured = mode.annotation("configure-app") == Some("true");
        let trust = if configured {
            Trust::ConfiguredByInjector
        } else {
            Trust::for_mode(mode)
        };
        let mut setup = client.setup(port, trust);
        if configured {
            setup.env.extend(injected::app_env(&patched)?);
        }
        transparent_run_in_pod(&name, &dir, &patched, client, mode, setup).await?
    } else if mode.mocks() {
        // Two pods of the injector's, in process: the column's annotations without the mock ones to
        // record, then all of them to answer the same requests from that recording.
        let options = SidecarOptions::new(images.sidecar.clone());
        let recording =
            injected::injected_in_process(&injected::recording_workload(mode), &options)?;
        let mocking = injected::injected_in_process(&injected::workload(mode, false), &options)?;
        let setup = client.setup(port, Trust::for_mode(mode));
        mock_run_in_pod(&name, &dir, &recording, &mocking, client, mode, setup).await?
    } else {
        // The sidecar exactly as the injector adds it to a pod carrying the column's annotations.
        let injected = injected::injected_in_process(
            &injected::workload(mode, false),
            &SidecarOptions::new(images.sidecar.clone()),
        )?;
        let setup = client.setup(port, Trust::for_mode(mode));
        run_in_pod(&name, &dir, &injected, client, mode, setup).await?
    };

    let (outcome, detail) = if problems.is_empty() {
        (Outcome::Pass, None)
    } else {
        (Outcome::Fail, Some(problems.join("; ")))
    };
    let result = CellResult::new(client.id, mode.id, &expected, outcome, detail);
    result.write(&workspace::results_dir())?;
    Ok(result)
}
