//! curl (the system's /usr/bin/curl) as an outside client, through every listener a user can configure:
//! forward http (absolute-form and CONNECT tunnel), forward socks (4, 4a, 5, 5 with remote resolution), the
//! same on dual outbound listeners, and the reverse listeners hit directly. Each cell sends a GET (the app
//! echoes the request line it received) and a POST of a few hundred KB (the app answers its SHA-256).

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use rstest::rstest;
use support::{sha256_hex, start_app, start_proxy};

/// Which of the sidecar's listeners curl talks to.
#[derive(Clone, Copy, Debug)]
enum Listener {
    Outbound,
    Inbound,
}

/// How curl reaches the app through that listener.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// `-x http://proxy`: absolute-form requests.
    HttpProxy,
    /// `-p -x http://proxy`: a CONNECT tunnel, then origin-form inside it.
    HttpTunnel,
    Socks4,
    Socks4a,
    Socks5,
    Socks5Hostname,
    /// The listener is the URL's host:port (reverse proxies).
    Direct,
}

const POST_LEN: usize = 300 * 1024 + 17;

struct Reply {
    status: u16,
    body: String,
}

/// Runs curl with the common flags, the proxy flags for `via`, then `args` and `url`.
async fn run_curl(via: Via, proxy: SocketAddr, url: &str, args: &[&str]) -> std::process::Output {
    let proxy_url = format!("127.0.0.1:{}", proxy.port());
    let mut command = tokio::process::Command::new("/usr/bin/curl");
    for name in support::env::CLIENT_PROXY_VARS {
        command.env_remove(name);
    }
    // -q first: no ~/.curlrc. The status code is appended after a marker line so the body stays exact.
    command.args([
        "-q",
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n@@status=%{http_code}",
    ]);
    match via {
        Via::HttpProxy => {
            command.args(["-x", &format!("http://{proxy_url}")]);
        }
        Via::HttpTunnel => {
            command.args(["-p", "-x", &format!("http://{proxy_url}")]);
        }
        Via::Socks4 => {
            command.args(["--socks4", &proxy_url]);
        }
        Via::Socks4a => {
            command.args(["--socks4a", &proxy_url]);
        }
        Via::Socks5 => {
            command.args(["--socks5", &proxy_url]);
        }
        Via::Socks5Hostname => {
            command.args(["--socks5-hostname", &proxy_url]);
        }
        Via::Direct => {}
    }
    command
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command.output().await.expect("run /usr/bin/curl")
}

/// [`run_curl`], which must succeed; returns the status and body.
async fn curl(via: Via, proxy: SocketAddr, url: &str, args: &[&str]) -> Reply {
    let output = run_curl(via, proxy, url, args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "curl {via:?} {url} failed ({}): {stderr}\nstdout: {stdout}",
        output.status
    );
    let (body, status) = stdout
        .rsplit_once("\n@@status=")
        .unwrap_or_else(|| panic!("no status marker in curl output: {stdout}"));
    Reply {
        status: status.trim().parse().expect("numeric status"),
        body: body.to_owned(),
    }
}

/// A listener that closes every connection unanswered.
async fn hang_up_listener() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

/// A file of `len` bytes that differs per cell, removed when dropped.
struct Upload {
    path: PathBuf,
    sha256: String,
}

impl Upload {
    async fn new(len: usize) -> Upload {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let seed = NEXT.fetch_add(1, Ordering::SeqCst);
        let bytes: Vec<u8> = (0..len)
            .map(|i| ((i * 131 + seed * 7) ^ (i >> 10)) as u8)
            .collect();
        let path = std::env::temp_dir().join(format!(
            "sidecar-curl-upload-{}-{seed}.bin",
            std::process::id()
        ));
        tokio::fs::write(&path, &bytes).await.unwrap();
        Upload {
            path,
            sha256: sha256_hex(&bytes),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[rstest]
#[case::forward_http_absolute_form("forward", "http", Listener::Outbound, Via::HttpProxy)]
#[case::forward_http_connect_tunnel("forward", "http", Listener::Outbound, Via::HttpTunnel)]
#[case::forward_socks_socks4("forward", "socks", Listener::Outbound, Via::Socks4)]
#[case::forward_socks_socks4a("forward", "socks", Listener::Outbound, Via::Socks4a)]
#[case::forward_socks_socks5("forward", "socks", Listener::Outbound, Via::Socks5)]
#[case::forward_socks_socks5_hostname("forward", "socks", Listener::Outbound, Via::Socks5Hostname)]
#[case::dual_tcp_http_outbound_absolute_form(
    "dual",
    "tcp:http",
    Listener::Outbound,
    Via::HttpProxy
)]
#[case::dual_tcp_http_outbound_connect_tunnel(
    "dual",
    "tcp:http",
    Listener::Outbound,
    Via::HttpTunnel
)]
#[case::dual_tcp_socks_outbound_socks4("dual", "tcp:socks", Listener::Outbound, Via::Socks4)]
#[case::dual_tcp_socks_outbound_socks4a("dual", "tcp:socks", Listener::Outbound, Via::Socks4a)]
#[case::dual_tcp_socks_outbound_socks5("dual", "tcp:socks", Listener::Outbound, Via::Socks5)]
#[case::dual_tcp_socks_outbound_socks5_hostname(
    "dual",
    "tcp:socks",
    Listener::Outbound,
    Via::Socks5Hostname
)]
#[case::dual_http_outbound_absolute_form("dual", "http", Listener::Outbound, Via::HttpProxy)]
#[case::dual_http_outbound_connect_tunnel("dual", "http", Listener::Outbound, Via::HttpTunnel)]
#[case::dual_socks_outbound_socks4("dual", "socks", Listener::Outbound, Via::Socks4)]
#[case::dual_socks_outbound_socks4a("dual", "socks", Listener::Outbound, Via::Socks4a)]
#[case::dual_socks_outbound_socks5("dual", "socks", Listener::Outbound, Via::Socks5)]
#[case::dual_socks_outbound_socks5_hostname(
    "dual",
    "socks",
    Listener::Outbound,
    Via::Socks5Hostname
)]
#[case::reverse_http_direct("reverse", "http", Listener::Inbound, Via::Direct)]
#[case::reverse_tcp_direct("reverse", "tcp", Listener::Inbound, Via::Direct)]
#[case::reverse_socks_socks5_hostname("reverse", "socks", Listener::Inbound, Via::Socks5Hostname)]
#[case::dual_tcp_http_inbound_direct("dual", "tcp:http", Listener::Inbound, Via::Direct)]
#[case::dual_http_inbound_direct("dual", "http", Listener::Inbound, Via::Direct)]
#[case::dual_tcp_socks_inbound_direct("dual", "tcp:socks", Listener::Inbound, Via::Direct)]
#[case::dual_socks_inbound_socks5_hostname("dual", "socks", Listener::Inbound, Via::Socks5Hostname)]
#[tokio::test]
async fn curl_get_and_post(
    #[case] proxy_type: &str,
    #[case] protocol: &str,
    #[case] listener: Listener,
    #[case] via: Via,
) {
    let app = start_app().await;
    let proxy = start_proxy(proxy_type, protocol, Some(app.addr)).await;
    let listener_addr = match listener {
        Listener::Outbound => proxy.outbound(),
        Listener::Inbound => proxy.inbound(),
    };
    // Through a proxy the URL names the app; hit directly, it names the listener. Either way the host is
    // `localhost`, the one name curl (or the sidecar) resolves.
    let authority = match via {
        Via::Direct => format!("localhost:{}", listener_addr.port()),
        _ => format!("localhost:{}", app.addr.port()),
    };

    let get = curl(
        via,
        listener_addr,
        &format!("http://{authority}/curl/get?cell=1"),
        &[],
    )
    .await;
    assert_eq!(get.status, 200, "{}", get.body);
    let mut lines = get.body.lines();
    assert_eq!(
        lines.next(),
        Some("GET /curl/get?cell=1 HTTP/1.1"),
        "{}",
        get.body
    );
    assert!(
        get.body.lines().any(|l| l == format!("host: {authority}")),
        "the app saw curl's Host header unchanged: {}",
        get.body
    );
    assert!(
        get.body.lines().any(|l| l.starts_with("user-agent: curl/")),
        "{}",
        get.body
    );
    assert!(
        !get.body.to_ascii_lowercase().contains("proxy-connection"),
        "hop-by-hop header reached the app: {}",
        get.body
    );

    let upload = Upload::new(POST_LEN).await;
    let data = format!("@{}", upload.path.display());
    let post = curl(
        via,
        listener_addr,
        &format!("http://{authority}/sha256"),
        &["--data-binary", &data],
    )
    .await;
    assert_eq!(post.status, 200, "{}", post.body);
    assert_eq!(post.body, format!("{POST_LEN} {}", upload.sha256));

    proxy.stop().await;

    // The same GET through a listener that hangs up at once must fail: curl really goes through the
    // listener it is given, not around it to the app.
    if !matches!(via, Via::Direct) {
        let dead = hang_up_listener().await;
        let bypass = run_curl(
            via,
            dead,
            &format!("http://{authority}/curl/get?cell=1"),
            &[],
        )
        .await;
        assert!(
            !bypass.status.success(),
            "curl reached the app without the sidecar: {}",
            String::from_utf8_lossy(&bypass.stdout)
        );
    }
}

/// A reverse socks proxy delivers to the app whatever destination the caller names: here one that does
/// not even resolve (curl hands the name to the proxy unresolved).
#[rstest]
#[case::reverse_socks("reverse", "socks")]
#[case::dual_socks_inbound("dual", "socks")]
#[tokio::test]
async fn curl_reverse_socks_ignores_the_named_destination(
    #[case] proxy_type: &str,
    #[case] protocol: &str,
) {
    let app = start_app().await;
    let proxy = start_proxy(proxy_type, protocol, Some(app.addr)).await;
    let get = curl(
        Via::Socks5Hostname,
        proxy.inbound(),
        "http://elsewhere.invalid:1/named/elsewhere",
        &[],
    )
    .await;
    assert_eq!(get.status, 200, "{}", get.body);
    assert!(
        get.body.starts_with("GET /named/elsewhere HTTP/1.1\n"),
        "{}",
        get.body
    );
    assert!(
        get.body.lines().any(|l| l == "host: elsewhere.invalid:1"),
        "{}",
        get.body
    );
    proxy.stop().await;
}
