//! The relay limit (docs/benchmarks.md): the simplest tcp relay tokio allows, measured next to
//! sidecar-proxy as the most any relay can get here. `minimal-relay LISTEN TARGET`, e.g.
//! `minimal-relay 127.0.0.1:9000 127.0.0.1:8080`. Accept, connect to the target, copy both ways until
//! either side closes; nothing else (no logs, no limits, no timeouts). Nagle is off on both sides, as
//! in every relay measured here.
#![forbid(unsafe_code)]

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(target)) = (args.next(), args.next()) else {
        eprintln!("usage: minimal-relay LISTEN_ADDR TARGET_ADDR");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let mut upstream = TcpStream::connect(&target).await?;
            client.set_nodelay(true)?;
            upstream.set_nodelay(true)?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
        });
    }
}
