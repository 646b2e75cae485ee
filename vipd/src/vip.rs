//! The `--vip A.B.C.D[/len]` argument, parsed once at start-up.

use std::net::IpAddr;

/// The virtual address and the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VipError {
    #[error("{0:?} is not an address like 10.0.0.50 or 10.0.0.50/24")]
    Address(String),
    #[error("prefix length {0} is too long for the address")]
    Prefix(u8),
    #[error("{0} is IPv6: vipd speaks VRRPv3 over IPv4 only so far")]
    Ipv6(IpAddr),
}

impl std::str::FromStr for Vip {
    type Err = VipError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| VipError::Address(s.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| VipError::Address(s.to_string()))?,
            None => max,
        };
        if prefix > max {
            return Err(VipError::Prefix(prefix));
        }
        if addr.is_ipv6() {
            return Err(VipError::Ipv6(addr));
        }
        Ok(Vip { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_prefix() {
        assert_eq!("10.0.0.50".parse(), Ok(Vip { addr: "10.0.0.50".parse().expect("ip"), prefix: 32 }));
        assert_eq!("10.0.0.50/24".parse(), Ok(Vip { addr: "10.0.0.50".parse().expect("ip"), prefix: 24 }));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!("10.0.0".parse::<Vip>(), Err(VipError::Address(_))));
        assert!(matches!("10.0.0.1/x".parse::<Vip>(), Err(VipError::Address(_))));
        assert_eq!("10.0.0.1/33".parse::<Vip>(), Err(VipError::Prefix(33)));
        assert!(matches!("2001:db8::1".parse::<Vip>(), Err(VipError::Ipv6(_))));
    }
}
