//! Network links for `runtime.json`'s `interfaces`: create (veth pairs,
//! wireguard, ...) and move links between network namespaces over rtnetlink.
//!
//! Hand-written: three request shapes (RTM_NEWLINK to create, to create a
//! veth with its peer elsewhere, and to move a link) need a few dozen bytes
//! each, where a netlink crate would bring an async runtime into PID1.
//! Owns: building those messages and reading the kernel's acknowledgement.
//! Must not decide which links a container gets: that is `runtime`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// An rtnetlink socket, bound to the network namespace it was opened in.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// A netlink attribute tree, serialized on demand.
enum Attr<'a> {
    Bytes(u16, &'a [u8]),
    Nested(u16, Vec<Attr<'a>>),
    /// A nested `ifinfomsg` followed by attributes (VETH_INFO_PEER).
    Link(u16, Vec<Attr<'a>>),
}

fn push_attr(out: &mut Vec<u8>, a: &Attr<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    let kind = match a {
        Attr::Bytes(t, data) => {
            out.extend_from_slice(data);
            *t
        }
        Attr::Nested(t, inner) => {
            for i in inner {
                push_attr(out, i);
            }
            *t | NLA_F_NESTED
        }
        Attr::Link(t, inner) => {
            out.extend_from_slice(&[0u8; 16]);
            for i in inner {
                push_attr(out, i);
            }
            *t
        }
    };
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    out[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
    while out.len() & 3 != 0 {
        out.push(0);
    }
}

fn name_bytes(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

impl Netlink {
    /// Opens a route netlink socket in the current network namespace.
    pub fn open() -> std::io::Result<Netlink> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            // Protocol 0 is NETLINK_ROUTE.
            None,
        )?;
        Ok(Netlink { fd, seq: 0 })
    }

    fn request(&mut self, flags: u16, attrs: &[Attr<'_>]) -> std::io::Result<()> {
        self.seq += 1;
        let mut msg = vec![0u8; 16];
        // struct ifinfomsg: family, pad, type, index, flags, change: all zero.
        msg.extend_from_slice(&[0u8; 16]);
        for a in attrs {
            push_attr(&mut msg, a);
        }
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        rustix::io::write(&self.fd, &msg)?;
        let mut reply = [0u8; 4096];
        loop {
            let n = rustix::io::read(&self.fd, &mut reply)?;
            if n < 20 {
                return Err(std::io::Error::other("short netlink reply"));
            }
            let kind = u16::from_ne_bytes([reply[4], reply[5]]);
            let seq = u32::from_ne_bytes([reply[8], reply[9], reply[10], reply[11]]);
            if kind != NLMSG_ERROR || seq != self.seq {
                continue;
            }
            let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
            return if code == 0 {
                Ok(())
            } else {
                Err(std::io::Error::from_raw_os_error(-code))
            };
        }
    }

    /// Creates a link `name` of `kind` here; for a veth, its `peer` end is
    /// put in the namespace `peer_ns` (or here when `None`).
    pub fn create(
        &mut self,
        name: &str,
        kind: &str,
        peer: Option<&str>,
        peer_ns: Option<&impl AsFd>,
    ) -> std::io::Result<()> {
        let ifname = name_bytes(name);
        let kind_bytes = name_bytes(kind);
        let peer_name = peer.map(name_bytes);
        let ns_fd = peer_ns.map(|f| f.as_fd().as_raw_fd().to_ne_bytes());
        let mut info = vec![Attr::Bytes(IFLA_INFO_KIND, &kind_bytes)];
        if let Some(p) = &peer_name {
            let mut peer_attrs = vec![Attr::Bytes(IFLA_IFNAME, p)];
            if let Some(fd) = &ns_fd {
                peer_attrs.push(Attr::Bytes(IFLA_NET_NS_FD, fd));
            }
            info.push(Attr::Nested(
                IFLA_INFO_DATA,
                vec![Attr::Link(VETH_INFO_PEER, peer_attrs)],
            ));
        }
        self.request(
            NLM_F_CREATE | NLM_F_EXCL,
            &[
                Attr::Bytes(IFLA_IFNAME, &ifname),
                Attr::Nested(IFLA_LINKINFO, info),
            ],
        )
    }

    /// Moves the link `name` (seen from this socket's namespace) into the
    /// network namespace `ns`.
    pub fn move_to(&mut self, name: &str, ns: &impl AsFd) -> std::io::Result<()> {
        let ifname = name_bytes(name);
        let fd = ns.as_fd().as_raw_fd().to_ne_bytes();
        self.request(
            0,
            &[
                Attr::Bytes(IFLA_IFNAME, &ifname),
                Attr::Bytes(IFLA_NET_NS_FD, &fd),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let mut out = Vec::new();
        push_attr(&mut out, &Attr::Bytes(IFLA_IFNAME, b"ab\0"));
        assert_eq!(out, [7, 0, 3, 0, b'a', b'b', 0, 0]);
        let mut out = Vec::new();
        push_attr(
            &mut out,
            &Attr::Nested(IFLA_LINKINFO, vec![Attr::Bytes(IFLA_INFO_KIND, b"veth\0")]),
        );
        // 4 (outer) + 4 + 5 padded to 8 = 16; the nested flag is set.
        assert_eq!(&out[0..4], &[16, 0, 18, 0x80]);
        assert_eq!(out.len(), 16);
    }
}
