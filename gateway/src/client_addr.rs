//! Who is asking: the client address that per-address limits and proof-of-work thresholds key on.
//!
//! `X-Forwarded-For` is read only when the TCP peer is one of the configured proxies
//! (`TRUSTED_PROXIES`), and then from the right: each hop was appended by the proxy to its right,
//! so hops are believable only while that proxy is trusted, and the first untrusted hop from the
//! right is the client. Anything further left was written by the client and is ignored.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::error::ApiError;

/// An IPv4 or IPv6 network, `10.0.0.0/8` or `fd00::/8`; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(ip)), self.prefix, 32) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(ip), self.prefix, 128) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `bits` (a `width`-bit address) with everything past the first `prefix` bits cleared.
fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let keep = u32::from(width - prefix);
    (bits >> keep) << keep
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not an address or a network"))?
            .to_canonical();
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0-{width}"))?,
        };
        let bits = match network {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        // Host bits set (`10.0.0.1/8`) most likely mean a typo in the prefix: refuse rather
        // than trust a network the operator did not mean.
        if masked(bits, prefix, width) != bits {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix; write the network address"
            ));
        }
        Ok(Self { network, prefix })
    }
}

/// The proxies whose `X-Forwarded-For` is believed; empty trusts none.
/// Shared: the address extractor takes it from the state on every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[Cidr]>);

impl TrustedProxies {
    /// A comma-separated list of networks (`TRUSTED_PROXIES`).
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Arc<[Cidr]>, _>>()
            .map(Self)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the rightmost
    /// `X-Forwarded-For` hop that is not a trusted proxy. When every hop is trusted, the leftmost
    /// one; when a trusted proxy wrote something that is not an address, the last trusted hop
    /// (never a value the client could have chosen).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        // Several header lines are one list in order (RFC 9110, 5.3): walk them from the last.
        // Hops are read one by one from the raw bytes: bytes that are not UTF-8 to the left of the
        // hop a trusted proxy appended must not hide that hop (the client would be keyed as the
        // proxy, sharing and draining everyone's bucket behind it).
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            for hop in value.as_bytes().rsplit(|byte| *byte == b',') {
                let Some(hop) = std::str::from_utf8(hop)
                    .ok()
                    .and_then(|hop| parse_hop(hop.trim()))
                else {
                    return client;
                };
                client = hop;
                if !self.trusts(hop) {
                    return client;
                }
            }
        }
        client
    }
}

/// One hop: an address, optionally with a port (`1.2.3.4:5678`, `[::1]:80`) as some proxies
/// write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address for this request (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The network the address belongs to, for ceilings wider than one subscriber: an IPv4 /24
    /// or an IPv6 /48 (what one site or provider customer is commonly given).
    pub fn network_key(self) -> IpAddr {
        match self.0.to_canonical() {
            IpAddr::V4(v4) => {
                IpAddr::V4(std::net::Ipv4Addr::from(
                    masked(u128::from(u32::from(v4)), 24, 32) as u32,
                ))
            }
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(masked(u128::from(v6), 48, 128))),
        }
    }

    /// What per-address limits count: the address, except that an IPv6 client is counted by its
    /// /64, since one subscriber is routinely given a whole /64 and could otherwise rotate
    /// through addresses to escape any per-address limit.
    pub fn limit_key(self) -> IpAddr {
        match self.0 {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(masked(u128::from(v6), 64, 128))),
        }
    }
}

impl<S> FromRequestParts<S> for ClientAddr
where
    TrustedProxies: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or(ApiError::UnknownClient)?;
        let trusted = TrustedProxies::from_ref(state);
        Ok(Self(trusted.client(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        headers
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).expect("a valid list")
    }

    #[test]
    fn networks_contain_exactly_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.1.0.1")));
        let one: Cidr = "192.0.2.1".parse().unwrap();
        assert!(one.contains(ip("192.0.2.1")) && !one.contains(ip("192.0.2.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn malformed_networks_are_refused_with_the_reason() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "proxy.local",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
        assert!(TrustedProxies::parse("10.0.0.0/8, nonsense").is_err());
        assert_eq!(
            TrustedProxies::parse(" ").unwrap(),
            TrustedProxies::default()
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies("10.0.0.0/8");
        let headers = forwarded(&["198.51.100.1, 10.0.0.3"]);
        assert_eq!(
            trusted.client(ip("203.0.113.5"), &headers),
            ip("203.0.113.5")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.2"), &headers),
            ip("10.0.0.2"),
            "no proxy is trusted by default"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies("10.0.0.0/8, 192.168.1.1");
        // The client forged the leftmost hop; the edge proxy appended the real address.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7, 192.168.1.1"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("203.0.113.7"));
        // The same list split over several header lines.
        let headers = forwarded(&["1.1.1.1", "203.0.113.7:5123", "192.168.1.1"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("203.0.113.7"));
        let headers = forwarded(&["[2001:db8::1]:443"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("2001:db8::1"));
    }

    #[test]
    fn a_trusted_peer_without_forwarding_or_with_only_trusted_hops_stays_itself() {
        let trusted = proxies("10.0.0.0/8");
        assert_eq!(
            trusted.client(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        let headers = forwarded(&["10.0.0.9, 10.0.0.8"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("10.0.0.9"));
    }

    #[test]
    fn garbage_written_behind_a_trusted_hop_never_becomes_the_client() {
        let trusted = proxies("10.0.0.0/8");
        let headers = forwarded(&["203.0.113.1, unknown, 10.0.0.8"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("10.0.0.8"));
        let headers = forwarded(&["203.0.113.1, nonsense"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("10.0.0.2"));
    }

    #[test]
    fn bytes_that_are_not_utf8_hide_no_hop_a_trusted_proxy_appended() {
        let trusted = proxies("10.0.0.0/8");
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.1, 10.0.0.8").unwrap(),
        );
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("203.0.113.1"));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64() {
        let a = ClientAddr(ip("2001:db8:1:2:aaaa::1")).limit_key();
        let b = ClientAddr(ip("2001:db8:1:2:bbbb::9")).limit_key();
        let c = ClientAddr(ip("2001:db8:1:3::1")).limit_key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            ClientAddr(ip("198.51.100.4")).limit_key(),
            ip("198.51.100.4")
        );
    }
}
