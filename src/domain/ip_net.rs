//! Address ranges (CIDR) and the addresses clients are counted by.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use super::ParseError;

/// A range of addresses: `10.0.0.0/8`, `fd00::/8`, or one address (a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `address/prefix` or a bare address.
    ///
    /// # Errors
    /// When the address or the prefix length is not valid for its family.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let (address, prefix) = match raw.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| ParseError::new("is not an IP address or CIDR range"))?;
        let address = canonical(address);
        let max = max_prefix(address);
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| ParseError::new(format!("prefix must be 0 to {max}")))?,
        };
        Ok(Self {
            network: masked(address, prefix),
            prefix,
        })
    }

    /// Whether `address` lies in the range.
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        address.is_ipv4() == self.network.is_ipv4() && masked(address, self.prefix) == self.network
    }
}

impl FromStr for IpNet {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::parse(raw)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The address a client is counted by: IPv4 as it is (an IPv4-mapped IPv6 address folds into
/// IPv4), IPv6 by its first `v6_prefix` bits, since one host holds a whole /64.
#[must_use]
pub fn client_bucket(address: IpAddr, v6_prefix: u8) -> IpAddr {
    let address = canonical(address);
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(_) => masked(address, v6_prefix.min(128)),
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as the IPv4 address it is.
#[must_use]
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{IpNet, client_bucket};

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses_only() {
        let private = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(private.contains(ip("10.200.1.2")));
        assert!(private.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped folds");
        assert!(!private.contains(ip("11.0.0.1")));
        let host = IpNet::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        for bad in ["", "10.0.0.0/33", "fd00::/129", "10.0.0/8", "10.0.0.0/x"] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_network_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_bucket(ip("2001:db8:1:2:aaaa::1"), 64),
            client_bucket(ip("2001:db8:1:2:bbbb::9"), 64)
        );
        assert_ne!(
            client_bucket(ip("2001:db8:1:2::1"), 64),
            client_bucket(ip("2001:db8:1:3::1"), 64)
        );
        assert_eq!(
            client_bucket(ip("::ffff:198.51.100.4"), 64),
            ip("198.51.100.4")
        );
        assert_eq!(client_bucket(ip("198.51.100.4"), 64), ip("198.51.100.4"));
    }
}
