//! I/O adapters around the pure core: the VRRP raw socket, the interface
//! (addresses via rtnetlink) and gratuitous ARP. Each is thin: the decisions
//! live in `state`, `packet` and `arp`.

pub mod garp;
pub mod link;
pub mod socket;

/// Why an adapter failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("interface {0} has no IPv4 address besides the VIP (VRRP needs a primary address)")]
    NoPrimary(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
        let what = what.into();
        move |source| NetError::Io { what, source }
    }
}
