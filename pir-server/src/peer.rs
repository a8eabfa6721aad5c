//! Who a request is from, as the per-peer limits see it: the client's address (behind a trusted
//! proxy, the one the proxy reports) aggregated to its network.
//!
//! ```text
//! TCP peer ── in a --trusted-proxy network? ── no ──▶ the TCP peer (forwarding headers ignored)
//!                     │ yes
//!                     ▼
//!   x-forwarded-for (else forwarded: for=...), read right to left, skipping trusted hops:
//!   the first untrusted hop is the client; none usable: the TCP peer (the proxy itself)
//!                     │
//!                     ▼
//!   network: IPv4 to --peer-prefix-v4 bits (32), IPv6 to --peer-prefix-v6 bits (64);
//!   an IPv4-mapped IPv6 address counts as IPv4
//! ```
//!
//! Only the hops a trusted proxy appended can be believed: anything left of them is whatever the
//! client sent, so reading right to left and stopping at the first untrusted hop is the one
//! reading a client cannot forge. One IPv6 host commonly holds a whole /64, so limits keyed on
//! single IPv6 addresses would give it 2^64 budgets.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tonic::metadata::MetadataMap;

/// How requests are attributed to peers: the trusted proxies and the aggregation prefixes.
#[derive(Clone, Debug)]
pub(crate) struct PeerPolicy {
    trusted: Vec<IpNet>,
    prefix_v4: u8,
    prefix_v6: u8,
}

impl PeerPolicy {
    /// A policy trusting the proxies in `trusted`, aggregating to the given prefix lengths
    /// (clamped to 32 and 128).
    pub(crate) fn new(trusted: Vec<IpNet>, prefix_v4: u8, prefix_v6: u8) -> Self {
        Self {
            trusted,
            prefix_v4: prefix_v4.min(32),
            prefix_v6: prefix_v6.min(128),
        }
    }

    /// The network the per-peer limits charge for a request from TCP peer `remote` with
    /// `headers`; `None` when the transport knows no peer (then no per-peer limit applies).
    pub(crate) fn peer_of(&self, remote: Option<IpAddr>, headers: &MetadataMap) -> Option<IpAddr> {
        let client = self.client_address(remote?, headers);
        Some(self.network(client))
    }

    /// The client's address: `remote`, or what a trusted proxy at `remote` says.
    pub(crate) fn client_address(&self, remote: IpAddr, headers: &MetadataMap) -> IpAddr {
        let remote = canonical(remote);
        if !self.is_trusted(remote) {
            return remote;
        }
        let hops = forwarded_for(headers);
        // Right to left: the nearest hop first. The first one that is not a trusted proxy is
        // the client; a hop that does not parse ends the walk (nothing left of it is believable).
        let mut client = remote;
        for hop in hops.iter().rev() {
            let Some(addr) = hop else { break };
            client = canonical(*addr);
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// `addr` truncated to the aggregation prefix of its family.
    pub(crate) fn network(&self, addr: IpAddr) -> IpAddr {
        match canonical(addr) {
            IpAddr::V4(a) => Ipv4Net::new(a, self.prefix_v4)
                .map(|n| IpAddr::V4(n.network()))
                .unwrap_or(IpAddr::V4(a)),
            IpAddr::V6(a) => Ipv6Net::new(a, self.prefix_v6)
                .map(|n| IpAddr::V6(n.network()))
                .unwrap_or(IpAddr::V6(a)),
        }
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 client) as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops a request passed, left (the first) to right (the nearest), from every
/// `x-forwarded-for` header, or else every `forwarded` header's `for=` parameters (RFC 7239);
/// `None` for a hop that is not an address (`unknown`, an obfuscated name, garbage).
fn forwarded_for(headers: &MetadataMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
            .collect()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect();
    }
    values("forwarded")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| parse_hop(v.trim().trim_matches('"')))
        })
        .collect()
}

/// One hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str]) -> PeerPolicy {
        PeerPolicy::new(trusted.iter().map(|t| t.parse().unwrap()).collect(), 32, 64)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_aggregated_to_a_slash_64_and_ipv4_kept_whole() {
        let p = policy(&[]);
        let net = |s| p.network(ip(s));
        assert_eq!(net("2001:db8:1:2::1"), ip("2001:db8:1:2::"));
        assert_eq!(
            net("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            ip("2001:db8:1:2::")
        );
        assert_ne!(net("2001:db8:1:3::1"), net("2001:db8:1:2::1"));
        assert_eq!(net("192.0.2.7"), ip("192.0.2.7"));
        assert_ne!(net("192.0.2.7"), net("192.0.2.8"));
        // A dual-stack socket's IPv4 client is an IPv4 peer, not a /64 of mapped addresses.
        assert_eq!(net("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_ne!(net("::ffff:192.0.2.7"), net("::ffff:192.0.2.8"));
    }

    #[test]
    fn prefixes_are_configurable_and_clamped() {
        let p = PeerPolicy::new(Vec::new(), 24, 48);
        assert_eq!(p.network(ip("192.0.2.7")), ip("192.0.2.0"));
        assert_eq!(p.network(ip("2001:db8:1:2::1")), ip("2001:db8:1::"));
        let p = PeerPolicy::new(Vec::new(), 200, 200);
        assert_eq!(p.network(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(p.network(ip("2001:db8::1")), ip("2001:db8::1"));
        let p = PeerPolicy::new(Vec::new(), 0, 0);
        assert_eq!(p.network(ip("192.0.2.7")), ip("0.0.0.0"));
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            policy(&[]).client_address(ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
        assert_eq!(
            policy(&["10.0.0.0/8"]).client_address(ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
        assert_eq!(
            policy(&["127.0.0.1/32"]).client_address(ip("127.0.0.1"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop() {
        let p = policy(&["127.0.0.1/32", "10.0.0.0/8"]);
        let local = ip("127.0.0.1");
        // The client forged the first hop; the proxies appended the rest.
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(p.client_address(local, &h), ip("203.0.113.9"));
        // Several headers are one list, in order; ports and brackets are allowed.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "[2001:db8::5]:4711, 10.0.0.1:80"),
        ]);
        assert_eq!(p.client_address(local, &h), ip("2001:db8::5"));
        // A hop that is no address stops the walk at the last believable one.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, garbage, 10.0.0.2")]);
        assert_eq!(p.client_address(local, &h), ip("10.0.0.2"));
        // Only trusted hops: the leftmost of them is as far as can be known.
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(p.client_address(local, &h), ip("10.0.0.3"));
        // No header: the proxy itself.
        assert_eq!(p.client_address(local, &MetadataMap::new()), local);
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let p = policy(&["127.0.0.1/32"]);
        let local = ip("127.0.0.1");
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.1;proto=https, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1",
        )]);
        assert_eq!(p.client_address(local, &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(p.client_address(local, &h), local);
        // x-forwarded-for wins when both are present.
        let h = headers(&[
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(p.client_address(local, &h), ip("203.0.113.9"));
    }

    #[test]
    fn peer_of_aggregates_the_forwarded_client() {
        let p = policy(&["::1/128"]);
        let h = headers(&[("x-forwarded-for", "2001:db8:1:2::abcd")]);
        assert_eq!(p.peer_of(Some(ip("::1")), &h), Some(ip("2001:db8:1:2::")));
        assert_eq!(p.peer_of(None, &h), None);
    }
}
