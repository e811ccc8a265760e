//! The webhook's `auto` layout: what the API server last said of the cluster's versions, kept for the
//! admissions. An admission never waits for the API server: it reads the decision in memory, which a
//! background task refreshes every [`REFRESH_INTERVAL`] (sooner after a failure). Until the first answer,
//! and whenever the API server cannot be asked (no token, unreachable, 401/403), pods get the classic
//! layout, which runs on any version, with the reason on the pod and one warning in the log (repeated at
//! most every [`WARN_EVERY`] while it lasts).

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster_api::{ask_versions, AskError, ClusterAccess};
use crate::kube_versions::layout_for;
use crate::layout::{AutoLayout, SidecarLayout};

/// How often the versions are asked again: nodes join and are upgraded, the API server too.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// After a failed ask: soon, so a fixed RBAC or a restarted API server is noticed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// How long the webhook waits for the first answer before it serves (then classic until one comes).
const FIRST_ASK_LIMIT: Duration = Duration::from_secs(5);
/// While asking keeps failing, the warning is repeated this rarely.
const WARN_EVERY: Duration = Duration::from_secs(30 * 60);

/// Where `auto` comes from.
#[derive(Debug, Clone)]
pub enum AutoLayoutSource {
    /// The sidecar options' `auto_layout` (`--native-sidecar true|false`).
    Fixed,
    /// Ask the API server (`--native-sidecar auto`).
    AskCluster(ClusterAccess),
}

/// The current decision, for the admissions.
#[derive(Debug, Clone)]
pub(super) enum CurrentLayout {
    Fixed,
    Cluster(watch::Receiver<AutoLayout>),
}

impl CurrentLayout {
    /// The decision for an admission now; `None`: the options' own.
    pub(super) fn get(&self) -> Option<AutoLayout> {
        match self {
            CurrentLayout::Fixed => None,
            CurrentLayout::Cluster(receiver) => Some(receiver.borrow().clone()),
        }
    }
}

/// Asks the API server and publishes each decision.
pub(super) struct Refresher {
    access: ClusterAccess,
    sender: watch::Sender<AutoLayout>,
    last_warning: Option<Instant>,
    failing: bool,
}

impl Refresher {
    /// Asks once (at most [`FIRST_ASK_LIMIT`]) before the webhook serves, so pods admitted right after it
    /// starts already get the cluster's layout; then [`Refresher::run`] keeps it current.
    pub(super) async fn start(access: ClusterAccess) -> (Refresher, CurrentLayout) {
        let (sender, receiver) = watch::channel(AutoLayout::new(
            SidecarLayout::Classic,
            "the API server has not answered yet; classic runs on any Kubernetes version",
        ));
        let mut refresher = Refresher {
            access,
            sender,
            last_warning: None,
            failing: false,
        };
        if tokio::time::timeout(FIRST_ASK_LIMIT, refresher.refresh())
            .await
            .is_err()
        {
            warn!(limit = ?FIRST_ASK_LIMIT, "the API server has not told the Kubernetes versions yet; pods with native-sidecar auto get the classic layout until it does");
            refresher.failing = true;
            refresher.last_warning = Some(Instant::now());
        }
        (refresher, CurrentLayout::Cluster(receiver))
    }

    pub(super) async fn run(mut self, stop: CancellationToken) {
        loop {
            let wait = if self.failing {
                RETRY_AFTER_FAILURE
            } else {
                REFRESH_INTERVAL
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                () = self.refresh() => {}
            }
        }
    }

    async fn refresh(&mut self) {
        let decision = match ask_versions(&self.access).await {
            Ok(versions) => {
                let decision = layout_for(&versions);
                if self.failing {
                    info!("the API server answered again");
                }
                self.failing = false;
                decision
            }
            Err(e) => self.failed(&e),
        };
        self.sender.send_if_modified(|current| {
            if *current == decision {
                return false;
            }
            info!(layout = decision.layout.as_str(), reason = %decision.reason, "layout for pods with native-sidecar auto");
            *current = decision;
            true
        });
    }

    fn failed(&mut self, error: &AskError) -> AutoLayout {
        let hint = if error.is_refusal() {
            " (the injector's ServiceAccount needs get on /version and get, list on nodes: deploy/rbac.yaml)"
        } else {
            ""
        };
        let due = self
            .last_warning
            .is_none_or(|last| last.elapsed() >= WARN_EVERY);
        if !self.failing || due {
            warn!(error = %error, "cannot ask the API server for the Kubernetes versions{hint}; pods with native-sidecar auto get the classic layout until it answers");
            self.last_warning = Some(Instant::now());
        }
        self.failing = true;
        AutoLayout::new(
            SidecarLayout::Classic,
            format!("cannot ask the API server for the Kubernetes versions ({error}){hint}; classic runs on any version"),
        )
    }
}
