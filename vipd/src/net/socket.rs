//! The VRRP raw socket: IP protocol 112 on one interface, joined to
//! 224.0.0.18, our own multicast not looped back, IP header written by us
//! (IP_HDRINCL) so TTL 255 and the source address the checksum covers are
//! exactly what goes on the wire. Received datagrams come with their IP
//! header, which is how TTL and source are checked.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::NetError;
use crate::packet::{self, Advert, MULTICAST_V4, PROTO_VRRP};

/// Where adverts go: the VRRP group, or each configured peer.
#[derive(Debug, Clone)]
pub enum Destinations {
    Multicast,
    Unicast(Vec<Ipv4Addr>),
}

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    source: Ipv4Addr,
    destinations: Destinations,
}

impl VrrpSocket {
    pub fn open(
        interface: &str,
        ifindex: u32,
        source: Ipv4Addr,
        destinations: Destinations,
    ) -> Result<VrrpSocket, NetError> {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(PROTO_VRRP))))
            .map_err(NetError::io("raw socket for IP protocol 112"))?;
        s.bind_device(Some(interface.as_bytes())).map_err(NetError::io(format!("bind to device {interface}")))?;
        s.set_header_included_v4(true).map_err(NetError::io("IP_HDRINCL"))?;
        s.set_multicast_ttl_v4(u32::from(packet::TTL)).map_err(NetError::io("IP_MULTICAST_TTL"))?;
        s.set_multicast_loop_v4(false).map_err(NetError::io("IP_MULTICAST_LOOP"))?;
        s.set_multicast_if_v4(&source).map_err(NetError::io("IP_MULTICAST_IF"))?;
        s.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))
            .map_err(NetError::io(format!("join {MULTICAST_V4} on {interface}")))?;
        s.set_nonblocking(true).map_err(NetError::io("O_NONBLOCK"))?;
        // SAFETY: the socket owns its descriptor and moves into the AsyncFd,
        // so the descriptor stays open and the same for the AsyncFd's life.
        let fd = unsafe { AsyncFd::register(s) }
            .map_err(|e| NetError::Io { what: "register raw socket".into(), source: e.into_parts().1 })?;
        Ok(VrrpSocket { fd, source, destinations })
    }

    /// Sends the advert to every destination; the first error is returned
    /// after trying them all.
    pub async fn send(&self, advert: &Advert) -> Result<(), NetError> {
        let dsts: Vec<Ipv4Addr> = match &self.destinations {
            Destinations::Multicast => vec![MULTICAST_V4],
            Destinations::Unicast(peers) => peers.clone(),
        };
        let mut first_err = None;
        for dst in dsts {
            let pkt = packet::encode_ipv4(advert, self.source, dst);
            let addr = SockAddr::from(SocketAddrV4::new(dst, 0));
            let res = loop {
                let mut guard = match self.fd.writable().await {
                    Ok(g) => g,
                    Err(e) => break Err(e),
                };
                match guard.try_io(|inner| inner.get_ref().send_to(&pkt, &addr)) {
                    Ok(r) => break r.map(|_| ()),
                    Err(_would_block) => continue,
                }
            };
            if let Err(source) = res {
                first_err.get_or_insert(NetError::Io { what: format!("send advert to {dst}"), source });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The next datagram, IP header included.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(NetError::io("wait for adverts"))?;
            match guard.try_io(|inner| inner.get_ref().read(buf)) {
                Ok(r) => return r.map_err(NetError::io("receive advert")),
                Err(_would_block) => continue,
            }
        }
    }
}
