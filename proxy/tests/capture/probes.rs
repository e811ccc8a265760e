//! Kubelet probes (User-Agent `kube-probe/...`) reaching the pod are relayed like any request but not
//! recorded, only counted, on every path that records inbound HTTP: the reverse HTTP listener (HTTP/1 and
//! HTTP/2) and the tap on relayed streams (HTTP/1 and HTTP/2 inside a reverse tcp relay). Outbound paths
//! (forward absolute-form, HTTP/1 inside a CONNECT tunnel) record a request with that User-Agent: it is the
//! app's own call. `--capture-probes` records them all.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rstest::rstest;
use sidecar_proxy::metrics::DirectionLabels;
use tokio::net::TcpStream;

use crate::support::capture::{connect_tunnel, start_capturing_proxy, RawHttp};
use crate::support::start_app;
use crate::{http_detail, Sent, DEADLINE};

const PROBE_AGENT: &str = "kube-probe/1.33";
const APP_AGENT: &str = "curl/8.5.0";

#[derive(Clone, Copy, Debug)]
enum Path {
    ReverseHttpListener,
    ReverseHttpListenerH2,
    ForwardAbsoluteForm,
    ReverseTcpTap,
    ReverseTcpTapH2,
    ConnectTunnelTap,
}

impl Path {
    fn mode(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Path::ReverseHttpListener | Path::ReverseHttpListenerH2 => {
                ("reverse", "http", "inbound")
            }
            Path::ReverseTcpTap | Path::ReverseTcpTapH2 => ("reverse", "tcp", "inbound"),
            Path::ForwardAbsoluteForm | Path::ConnectTunnelTap => ("forward", "http", "outbound"),
        }
    }

    fn is_h2(self) -> bool {
        matches!(self, Path::ReverseHttpListenerH2 | Path::ReverseTcpTapH2)
    }
}

/// Sends a probe's request and the app's own, in that order on one connection; returns both statuses.
async fn send_both(path: Path, proxy: &crate::support::RunningProxy, app: SocketAddr) -> Vec<u16> {
    let requests = [("/healthz", PROBE_AGENT), ("/work", APP_AGENT)];
    if path.is_h2() {
        let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake::<
            _,
            _,
            UnsyncBoxBody<Bytes, Infallible>,
        >(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
        let connection = tokio::spawn(connection);
        let mut statuses = Vec::new();
        for (target, agent) in requests {
            let request = http::Request::get(format!("http://{app}{target}"))
                .header("user-agent", agent)
                .body(Empty::new().boxed_unsync())
                .unwrap();
            let response = tokio::time::timeout(DEADLINE, sender.send_request(request))
                .await
                .expect("an answer")
                .unwrap();
            statuses.push(response.status().as_u16());
            response.into_body().collect().await.unwrap();
        }
        drop(sender);
        let _ = tokio::time::timeout(DEADLINE, connection).await;
        return statuses;
    }
    let stream = match path {
        Path::ForwardAbsoluteForm => TcpStream::connect(proxy.outbound()).await.unwrap(),
        Path::ConnectTunnelTap => connect_tunnel(proxy.outbound(), &app.to_string()).await,
        _ => TcpStream::connect(proxy.inbound()).await.unwrap(),
    };
    let mut conn = RawHttp::new(stream);
    let mut statuses = Vec::new();
    for (target, agent) in requests {
        let target = match path {
            Path::ForwardAbsoluteForm => format!("http://{app}{target}"),
            _ => target.to_owned(),
        };
        let host = app.to_string();
        let sent = Sent::new(
            "GET",
            target,
            &[("Host", host.as_str()), ("User-Agent", agent)],
        );
        let got = tokio::time::timeout(DEADLINE, conn.exchange(&sent.bytes()))
            .await
            .expect("an answer")
            .unwrap();
        statuses.push(got.status);
    }
    statuses
}

#[rstest]
#[case::reverse_http_listener(Path::ReverseHttpListener)]
#[case::reverse_http_listener_h2(Path::ReverseHttpListenerH2)]
#[case::forward_absolute_form(Path::ForwardAbsoluteForm)]
#[case::reverse_tcp_tap(Path::ReverseTcpTap)]
#[case::reverse_tcp_tap_h2(Path::ReverseTcpTapH2)]
#[case::connect_tunnel_tap(Path::ConnectTunnelTap)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_probes_are_relayed_and_counted_but_recorded_only_when_asked(
    #[case] path: Path,
    #[values(false, true)] record_probes: bool,
) {
    let app = start_app().await;
    let (proxy_type, protocol, direction) = path.mode();
    let (proxy, log) = start_capturing_proxy(proxy_type, protocol, Some(app.addr), |settings| {
        settings.record_probes = record_probes;
    })
    .await;

    let statuses = send_both(path, &proxy, app.addr).await;
    assert_eq!(
        statuses,
        [200, 200],
        "the probe reaches the app like any request"
    );

    let metrics = log.metrics.clone();
    let records = log.records(proxy).await;
    let skipped = metrics
        .probes_skipped
        .get_or_create(&DirectionLabels { direction })
        .get();
    let recorded: Vec<(String, String)> = records
        .iter()
        .filter(|record| {
            matches!(
                record.detail,
                sidecar_proxy::capture::record::Detail::Http(_)
            )
        })
        .map(|record| {
            let request = &http_detail(record).request;
            let agent = request
                .headers
                .iter()
                .find(|(name, _)| name == "user-agent")
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            let path = request
                .url
                .rsplit_once(&app.addr.to_string())
                .map_or_else(|| request.url.clone(), |(_, path)| path.to_owned());
            (path, agent)
        })
        .collect();
    let work = ("/work".to_owned(), APP_AGENT.to_owned());
    let probe = ("/healthz".to_owned(), PROBE_AGENT.to_owned());
    // The kubelet probes from outside: only inbound requests are taken for probes, and an outbound one
    // with that User-Agent is the app's own call, recorded.
    if record_probes || direction == "outbound" {
        assert_eq!(recorded, [probe, work], "{records:#?}");
        assert_eq!(skipped, 0);
    } else {
        assert_eq!(recorded, [work], "{records:#?}");
        assert_eq!(skipped, 1);
    }
}
