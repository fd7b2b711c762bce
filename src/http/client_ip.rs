//! Client IP resolution honouring `TRUSTED_PROXY_CIDRS`: forwarded headers are
//! believed only when the TCP peer is a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// Resolves the client IP for a request from `peer` with `headers`.
pub fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer_ip) {
        return peer_ip;
    }
    let xff: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    if !xff.is_empty() {
        // Walk right to left: the first hop that is not one of ours is the client.
        let chain = xff.iter().chain(std::iter::once(&peer_ip));
        if let Some(ip) = chain.rev().find(|ip| !is_trusted(ip)) {
            return *ip;
        }
        return xff[0];
    }
    if let Some(ip) = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
    {
        if !is_trusted(&ip) {
            return ip;
        }
    }
    peer_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn spec_examples() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = |s: &str| SocketAddr::new(s.parse().unwrap(), 1234);
        assert_eq!(
            resolve(
                peer("198.51.100.20"),
                &h(&[("x-forwarded-for", "203.0.113.1")]),
                &trusted
            )
            .to_string(),
            "198.51.100.20"
        );
        assert_eq!(
            resolve(
                peer("10.0.0.1"),
                &h(&[("x-forwarded-for", "1.1.1.1, 2.2.2.2, 198.51.100.10")]),
                &trusted
            )
            .to_string(),
            "198.51.100.10"
        );
        assert_eq!(
            resolve(
                peer("10.0.0.1"),
                &h(&[("x-forwarded-for", "203.0.113.10, 10.1.1.1")]),
                &trusted
            )
            .to_string(),
            "203.0.113.10"
        );
        assert_eq!(
            resolve(
                peer("10.0.0.1"),
                &h(&[("x-real-ip", "198.51.100.11")]),
                &trusted
            )
            .to_string(),
            "198.51.100.11"
        );
        // No trusted proxies configured: headers are never believed.
        assert_eq!(
            resolve(peer("10.0.0.1"), &h(&[("x-forwarded-for", "1.2.3.4")]), &[]).to_string(),
            "10.0.0.1"
        );
    }
}
