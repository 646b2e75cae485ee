//! Sends gratuitous ARP for the VIP through an AF_PACKET socket bound to the
//! interface: a burst of several, spaced, because one frame can be lost and a
//! neighbour that missed it keeps the old owner's MAC for its whole timeout.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::NetError;
use crate::arp;

/// Frames in one burst and the gap between them.
pub const BURST: usize = 3;
pub const SPACING: Duration = Duration::from_millis(50);

/// A packet socket able to send Ethernet frames on one interface.
#[derive(Clone)]
pub struct Garp {
    fd: Arc<OwnedFd>,
    ifindex: u32,
    mac: [u8; 6],
}

impl Garp {
    pub fn open(ifindex: u32, mac: [u8; 6]) -> Result<Garp, NetError> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            // Protocol 0: send only, so no ARP traffic queues up on it.
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0)
        };
        if fd < 0 {
            return Err(NetError::Io { what: "AF_PACKET socket".into(), source: std::io::Error::last_os_error() });
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Garp { fd: Arc::new(fd), ifindex, mac })
    }

    fn send_one(&self, vip: Ipv4Addr) -> std::io::Result<()> {
        let frame = arp::gratuitous_request(self.mac, vip);
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = arp::ETH_P_ARP.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&arp::BROADCAST);
        // SAFETY: buffer and address point to live memory of the given sizes.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Sends a burst in the background; errors are logged, not fatal: the
    /// adverts still go out and the next burst may succeed. The caller
    /// aborts the burst when the node gives the VIP up (see `daemon.rs`).
    pub fn burst(&self, vip: Ipv4Addr) -> tokio::task::AbortHandle {
        let this = self.clone();
        let task = tokio::spawn(async move {
            for i in 0..BURST {
                if i > 0 {
                    tokio::time::sleep(SPACING).await;
                }
                match this.send_one(vip) {
                    Ok(()) => tracing::debug!(%vip, n = i + 1, "gratuitous ARP sent"),
                    Err(error) => tracing::warn!(%vip, %error, "gratuitous ARP failed"),
                }
            }
        });
        task.abort_handle()
    }
}
