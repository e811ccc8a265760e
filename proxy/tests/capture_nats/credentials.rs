//! A `.creds` file (`--capture-sink-credentials`): a server in operator mode (decentralised JWT
//! authentication) lets records in with the user's credentials and refuses them without; refused records
//! wait in the spool, counted, none dropped, and the next start with the credentials sends them.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::support::capture::{Sidecar, TempDir};
use crate::support::nats::{Access, NatsServer};
use crate::support::nats_creds::Decentralized;
use crate::support::start_app;
use crate::{count_by_request, exchanges, metrics_until, nats_metric, sink_args};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_lets_records_in_and_without_it_they_wait_in_the_spool() {
    const EXCHANGES: usize = 20;
    let dir = TempDir::new("nats-creds");
    let setup = Decentralized::new();
    let config = dir.0.join("server.conf");
    let creds = dir.0.join("sidecar.creds");
    std::fs::write(&config, &setup.server_config).unwrap();
    std::fs::write(&creds, &setup.creds).unwrap();
    let access = Access {
        config: Some(config),
        creds: Some(setup.creds.clone()),
        ..Access::default()
    };
    let server = NatsServer::start_with(&dir.0.join("nats"), access).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend(["--capture".into(), "off".into()]);

    // Without the credentials: the server refuses the connection; the records are spooled, not lost.
    let without: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut refused = Sidecar::reverse_http(app.addr, &without, &dir.0).await;
    let done = exchanges(
        refused.inbound,
        "refused",
        1,
        EXCHANGES,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(done, EXCHANGES);
    // Every record waits in the spool (the publisher's lag gauge follows within its poll interval).
    let waiting = metrics_until(refused.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= EXCHANGES as f64 && nats_metric(m, "lag_records") == spooled
    })
    .await;
    assert_eq!(nats_metric(&waiting, "acknowledged"), 0.0);
    assert_eq!(nats_metric(&waiting, "dropped"), 0.0);
    assert_eq!(
        server.count().await,
        0,
        "nothing got in without credentials"
    );
    refused.signal("TERM");
    assert!(refused.exit().await.success(), "{}", refused.stderr());

    // With them: the spool left by the refused run goes first, then the new records.
    args.extend([
        "--capture-sink-credentials".into(),
        creds.display().to_string(),
    ]);
    let with: Vec<&str> = args.iter().map(String::as_str).collect();
    let admitted = Sidecar::reverse_http(app.addr, &with, &dir.0).await;
    let done = exchanges(
        admitted.inbound,
        "admitted",
        1,
        EXCHANGES,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(done, EXCHANGES);
    let delivered = metrics_until(admitted.admin, |m| {
        nats_metric(m, "acknowledged") >= 2.0 * EXCHANGES as f64
            && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    assert_eq!(nats_metric(&delivered, "dropped"), 0.0);
    let stored = server.messages().await;
    for prefix in ["refused-", "admitted-"] {
        let counts = count_by_request(&stored, prefix);
        assert_eq!(counts.len(), EXCHANGES, "{prefix}: {counts:?}");
        assert!(counts.values().all(|&n| n == 1), "{prefix}: {counts:?}");
    }
    let seed = setup.creds.lines().find(|l| l.starts_with("SU")).unwrap();
    assert!(
        !admitted.stderr().contains(seed),
        "the seed is never logged"
    );
}
