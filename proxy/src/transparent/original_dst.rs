//! Where a redirected connection was going, from the kernel's NAT table (SO_ORIGINAL_DST for IPv4,
//! IP6T_SO_ORIGINAL_DST for IPv6).
//!
//! A connection that reached the listener directly (not through an iptables REDIRECT) reports the listener
//! itself as its original destination; relaying it would connect the sidecar to itself, over and over. Such
//! connections are told apart and refused.
//!
//! # The one unsafe operation, and why it is not in this crate
//!
//! Reading SO_ORIGINAL_DST is the only thing the sidecar does that needs `unsafe`: a raw `getsockopt(2)`
//! that writes a `sockaddr` into memory the caller provides. It is done by socket2's
//! [`SockRef::original_dst_v4`] and [`SockRef::original_dst_v6`], whose `unsafe` block hands the kernel a
//! zeroed `sockaddr_storage` with its true length and reads back only the length the kernel reports, so
//! nothing uninitialised or out of bounds is ever read. The descriptor is borrowed from the live
//! [`TcpStream`] for the duration of the call ([`SockRef`] ties the two lifetimes), so it cannot be closed
//! or reused underneath it. That keeps this crate, and every other crate of the workspace, under
//! `#![forbid(unsafe_code)]`: the attribute cannot be overridden by an `#[allow]`, so a second unsafe
//! block anywhere fails to compile. proxy/tests/security_defaults.rs checks the attribute stays at every
//! crate root. Should socket2 ever drop these calls, the replacement belongs here, as the single
//! `#[allow(unsafe_code)]` of the proxy (with `deny` instead of `forbid` at the crate root), with a
//! `// SAFETY:` comment carrying the argument above.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// What the kernel says about an accepted connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    /// Redirected by iptables: relay to this address.
    To(SocketAddr),
    /// Not redirected: its "original destination" is the listener itself.
    NotRedirected,
}

pub fn redirected_destination(stream: &TcpStream) -> io::Result<Redirect> {
    // An IPv4 connection on a dual-stack socket shows a mapped local address (::ffff:a.b.c.d), but its NAT
    // entry is IPv4: ask with the IPv4 option, and compare like with like.
    let local = normalize(stream.local_addr()?);
    let socket = SockRef::from(stream);
    let original = if local.is_ipv4() {
        socket.original_dst_v4()?
    } else {
        socket.original_dst_v6()?
    };
    let original = original
        .as_socket()
        .ok_or_else(|| io::Error::other("the original destination is not an IP address"))?;
    Ok(classify(local, normalize(original)))
}

fn classify(local: SocketAddr, original: SocketAddr) -> Redirect {
    if original == local {
        Redirect::NotRedirected
    } else {
        Redirect::To(original)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are the IPv4 address they stand for.
fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_connection_is_not_redirected() {
        // Without NAT rules the kernel reports the listener itself, which must never be dialed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        match redirected_destination(&accepted) {
            Ok(redirect) => assert_eq!(redirect, Redirect::NotRedirected),
            // Kernels without the nat table loaded answer ENOENT: equally "not redirected" for the caller.
            Err(e) => assert_eq!(e.raw_os_error(), Some(2), "{e}"),
        }
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(
            normalize(mapped),
            "10.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
    }
}
