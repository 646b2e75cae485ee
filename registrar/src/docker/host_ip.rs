//! The node's host address, registered for published ports and
//! host-network containers when `--host-ip` is not given.
//!
//! First choice: the address the local Consul agent advertises
//! (`agent/self` -> `Member.Addr`). That is the address the cluster already
//! knows this node by, so routers on other nodes can reach it by
//! construction; registrator users set `-ip` to exactly this by hand.
//! Fallback, when the agent does not answer at start-up: the source
//! address the kernel picks towards the default gateway (a UDP `connect`,
//! which sends nothing), i.e. the address of the default route's interface.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// The detected address and where it came from (for the log).
pub async fn detect(consul: &consul::Client) -> Option<(IpAddr, &'static str)> {
    if let Ok(resp) = consul.agent_self().await
        && let Some(ip) = resp.value.pointer("/Member/Addr").and_then(|v| v.as_str()).and_then(|s| s.parse().ok())
        && !IpAddr::is_unspecified(&ip)
    {
        return Some((ip, "consul agent"));
    }
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let gateway = default_gateway(&routes)?;
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    sock.connect(SocketAddr::new(IpAddr::V4(gateway), 9)).ok()?;
    Some((sock.local_addr().ok()?.ip(), "default route"))
}

/// The IPv4 default gateway from `/proc/net/route` (hex, little-endian).
fn default_gateway(routes: &str) -> Option<Ipv4Addr> {
    routes.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(f[2], 16).ok()?;
        Some(Ipv4Addr::from(raw.to_le_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_gateway() {
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                      eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                      eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_gateway(routes), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(default_gateway("Iface\tDestination\n"), None);
    }
}
