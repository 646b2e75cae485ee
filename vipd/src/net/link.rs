//! The interface the VIP lives on, through rtnetlink: its index, MAC and
//! primary address, and adding/removing the VIP idempotently (the kernel
//! answers EEXIST for an address already there and EADDRNOTAVAIL for one
//! already gone; both mean the goal holds).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle};

use super::NetError;
use crate::vip::Vip;

/// A resolved interface and a netlink handle to change its addresses.
pub struct Link {
    handle: Handle,
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    pub primary: Ipv4Addr,
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

impl Link {
    /// Looks the interface up; its primary address is the first IPv4 address
    /// on it that is not the VIP.
    pub async fn open(name: &str, vip: &Vip) -> Result<Link, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::io("netlink socket"))?;
        tokio::spawn(conn);
        let link = handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
            .map_err(|_| NetError::NoInterface(name.to_string()))?
            .ok_or_else(|| NetError::NoInterface(name.to_string()))?;
        let index = link.header.index;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) => <[u8; 6]>::try_from(m.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| NetError::NoMac(name.to_string()))?;
        let mut addrs = handle.address().get().set_link_index_filter(index).execute();
        let mut primary = None;
        while let Some(msg) = addrs.try_next().await.map_err(netlink(format!("list addresses of {name}")))? {
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = local
                && IpAddr::V4(ip) != vip.addr
                && primary.is_none()
            {
                primary = Some(ip);
            }
        }
        let primary = primary.ok_or_else(|| NetError::NoPrimary(name.to_string()))?;
        Ok(Link { handle, name: name.to_string(), index, mac, primary })
    }

    /// Adds the VIP; true when it was added, false when it was already there.
    pub async fn add(&self, vip: &Vip) -> Result<bool, NetError> {
        match self.handle.address().add(self.index, vip.addr, vip.prefix).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(NetError::Netlink { what: format!("add {} to {}", vip.addr, self.name), source: e }),
        }
    }

    /// Removes the VIP; true when it was there, false when it was not.
    pub async fn remove(&self, vip: &Vip) -> Result<bool, NetError> {
        let IpAddr::V4(addr) = vip.addr else { return Ok(false) };
        let msg = AddressMessageBuilder::<Ipv4Addr>::new().index(self.index).address(addr, vip.prefix).build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(NetError::Netlink { what: format!("remove {} from {}", vip.addr, self.name), source: e }),
        }
    }
}
