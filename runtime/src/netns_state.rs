//! The state of a container's own network namespace that travels: `lo`'s up
//! flag, its addresses and the routes on it that were added (not the ones the
//! kernel makes for an address), and the names of the other interfaces, which
//! were plumbed in from outside (veth from CNI or podman) and are the caller's
//! to plumb again: restore warns about each one missing.
//!
//! Read and written over rtnetlink from a thread that joined the container's
//! network namespace (setns(CLONE_NEWNET) is per thread; the socket belongs
//! to the namespace it was made in). rtnetlink's own crate is async, so the
//! few requests are made here over netlink-sys with netlink-packet-route.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// File in the image (inside `checkpoint/`) holding the [`NetState`].
pub const NET_DUMP: &str = "netns.dump";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub lo_up: bool,
    pub lo_addresses: Vec<LoAddress>,
    pub lo_routes: Vec<LoRoute>,
    /// Every interface of the namespace but `lo`, by name.
    pub other_interfaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// RT_SCOPE_*: the kernel refuses 127/8 with the default (universe).
    pub scope: u8,
}

/// A route through `lo` (added by the container or a hook).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoRoute {
    pub ipv6: bool,
    pub destination: Option<IpAddr>,
    pub prefix_len: u8,
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    pub kind: u8,
    pub gateway: Option<IpAddr>,
    pub pref_source: Option<IpAddr>,
    pub priority: Option<u32>,
}

/// A route netlink socket with request/response.
struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    fn new() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends one request; returns the messages of its answer (a dump's, or
    /// none for an acknowledged change). A kernel error is its errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        self.seq += 1;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0u8; req.header.length as usize];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 1 << 16];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0)?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rbuf[off..n])
                    .map_err(|e| io::Error::other(format!("netlink answer: {e}")))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }

    fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let answer = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(answer
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Reads the state of the network namespace this thread is in.
fn read_here() -> io::Result<NetState> {
    let mut nl = Rtnl::new()?;
    let mut state = NetState::default();
    let mut lo = None;
    for link in nl.links()? {
        let name = link_name(&link).unwrap_or_default();
        if name == "lo" {
            lo = Some(link.header.index);
            state.lo_up = link.header.flags.contains(LinkFlags::Up);
        } else {
            state.other_interfaces.push(name);
        }
    }
    let Some(lo) = lo else {
        return Ok(state);
    };
    let addresses = nl.request(
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    for m in addresses {
        let RouteNetlinkMessage::NewAddress(a) = m else {
            continue;
        };
        if a.header.index != lo {
            continue;
        }
        let address = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let address = address.or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(address) = address {
            state.lo_addresses.push(LoAddress {
                address,
                prefix_len: a.header.prefix_len,
                scope: a.header.scope.into(),
            });
        }
    }
    let routes = nl.request(
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
        NLM_F_REQUEST | NLM_F_DUMP,
    )?;
    for m in routes {
        let RouteNetlinkMessage::NewRoute(r) = m else {
            continue;
        };
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        // The kernel's own routes come back with the addresses.
        if oif != Some(lo) || r.header.protocol == RouteProtocol::Kernel {
            continue;
        }
        let find = |f: fn(&RouteAttribute) -> Option<IpAddr>| r.attributes.iter().find_map(f);
        state.lo_routes.push(LoRoute {
            ipv6: r.header.address_family == AddressFamily::Inet6,
            destination: find(|a| match a {
                RouteAttribute::Destination(d) => route_ip(d),
                _ => None,
            }),
            prefix_len: r.header.destination_prefix_length,
            table: r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(r.header.table as u32),
            protocol: r.header.protocol.into(),
            scope: r.header.scope.into(),
            kind: r.header.kind.into(),
            gateway: find(|a| match a {
                RouteAttribute::Gateway(d) => route_ip(d),
                _ => None,
            }),
            pref_source: find(|a| match a {
                RouteAttribute::PrefSource(d) => route_ip(d),
                _ => None,
            }),
            priority: r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Priority(p) => Some(*p),
                _ => None,
            }),
        });
    }
    Ok(state)
}

/// Already there (lo's own 127.0.0.1 once up, a route the kernel made): fine.
fn exists_ok(r: io::Result<Vec<RouteNetlinkMessage>>) -> io::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `state` into the network namespace this thread is in; returns what
/// it could not do (lo itself not coming up is an error).
fn write_here(state: &NetState) -> io::Result<Shortfall> {
    let mut out = Shortfall::default();
    let mut nl = Rtnl::new()?;
    let links = nl.links()?;
    let names: Vec<String> = links.iter().filter_map(link_name).collect();
    let lo = links
        .iter()
        .find(|l| link_name(l).as_deref() == Some("lo"))
        .map(|l| l.header.index)
        .ok_or_else(|| io::Error::other("the namespace has no lo"))?;
    if state.lo_up {
        let mut up = LinkMessage::default();
        up.header.index = lo;
        up.header.flags = LinkFlags::Up;
        up.header.change_mask = LinkFlags::Up;
        nl.request(RouteNetlinkMessage::SetLink(up), NLM_F_REQUEST | NLM_F_ACK)
            .map_err(|e| io::Error::new(e.kind(), format!("set lo up: {e}")))?;
    }
    for a in &state.lo_addresses {
        let mut m = AddressMessage::default();
        m.header.index = lo;
        m.header.prefix_len = a.prefix_len;
        m.header.scope = a.scope.into();
        m.header.family = match a.address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.attributes.push(AddressAttribute::Local(a.address));
        m.attributes.push(AddressAttribute::Address(a.address));
        if let Err(e) = exists_ok(nl.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )) {
            // E.g. IPv6 disabled on this host: the restore goes on, and a
            // socket that was bound to the address says so itself.
            out.warnings.push(format!(
                "address {}/{} not added to lo: {e}",
                a.address, a.prefix_len
            ));
        }
    }
    for r in &state.lo_routes {
        let mut m = RouteMessage::default();
        m.header.address_family = if r.ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        m.header.destination_prefix_length = r.prefix_len;
        m.header.table = if r.table < 256 {
            r.table as u8
        } else {
            RouteHeader::RT_TABLE_UNSPEC
        };
        m.header.protocol = r.protocol.into();
        m.header.scope = r.scope.into();
        m.header.kind = r.kind.into();
        m.attributes.push(RouteAttribute::Table(r.table));
        m.attributes.push(RouteAttribute::Oif(lo));
        if let Some(d) = r.destination {
            m.attributes.push(RouteAttribute::Destination(d.into()));
        }
        if let Some(g) = r.gateway {
            m.attributes.push(RouteAttribute::Gateway(g.into()));
        }
        if let Some(s) = r.pref_source {
            m.attributes.push(RouteAttribute::PrefSource(s.into()));
        }
        if let Some(p) = r.priority {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        if let Err(e) = exists_ok(nl.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )) {
            let dest = r
                .destination
                .map(|d| d.to_string())
                .unwrap_or_else(|| "default".into());
            out.warnings.push(format!(
                "route {dest}/{} on lo not added: {e}",
                r.prefix_len
            ));
        }
    }
    out.missing = state
        .other_interfaces
        .iter()
        .filter(|n| !names.contains(n))
        .cloned()
        .collect();
    Ok(out)
}

/// What writing the state could not do; the restore goes on.
#[derive(Default)]
struct Shortfall {
    /// Recorded interfaces (other than lo) the namespace lacks.
    missing: Vec<String>,
    warnings: Vec<String>,
}

/// Runs `work` on a thread that joined `pid`'s network namespace.
fn in_net_ns<T: Send + 'static>(
    pid: i32,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|e| RuntimeError::io(&ns_path, e))?;
    let joined = std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        work()
    })
    .join()
    .map_err(|_| RuntimeError::Unsupported {
        flag: "network namespace",
        reason: format!("the helper thread in the network namespace of pid {pid} panicked"),
    })?;
    joined.map_err(|e| RuntimeError::io(ns_path, e))
}

fn own_net_ns(pid: i32) -> Result<bool> {
    let theirs = format!("/proc/{pid}/ns/net");
    let theirs = std::fs::read_link(&theirs).map_err(|e| RuntimeError::io(&theirs, e))?;
    let ours = std::fs::read_link("/proc/self/ns/net")
        .map_err(|e| RuntimeError::io("/proc/self/ns/net", e))?;
    Ok(theirs != ours)
}

/// The state of `pid`'s network namespace, or `None` when it is the host's.
pub fn capture(pid: i32) -> Result<Option<NetState>> {
    if !own_net_ns(pid)? {
        return Ok(None);
    }
    in_net_ns(pid, read_here).map(Some)
}

/// Writes `state` into `pid`'s network namespace (a fresh one); warns on
/// stderr about each recorded interface it lacks (the restore goes on).
pub fn restore(pid: i32, state: &NetState) -> Result<()> {
    if !own_net_ns(pid)? {
        return Ok(());
    }
    let state = state.clone();
    let shortfall = in_net_ns(pid, move || write_here(&state))?;
    for warning in shortfall.warnings {
        tracing::warn!("{warning}");
        eprintln!("godwit: warning: {warning}");
    }
    for name in shortfall.missing {
        tracing::warn!(interface = %name, "interface missing after restore");
        eprintln!(
            "godwit: warning: interface {name} was plumbed in from outside: plumb it again (CNI/podman)"
        );
    }
    Ok(())
}

/// Reads `netns.dump` from an image; `None` when the container shared the
/// host's network namespace (or the image predates the file).
pub fn read_dump(image: &Path) -> Result<Option<NetState>> {
    let path = image.join(NET_DUMP);
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::bundle::parse_json(&path, &text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a fresh network namespace of a thread (needs root, as every test here).
    fn in_fresh_ns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn lo_state_written_reads_back() {
        let state = NetState {
            lo_up: true,
            lo_addresses: vec![LoAddress {
                address: "127.0.0.2".parse().unwrap(),
                prefix_len: 8,
                scope: libc::RT_SCOPE_HOST,
            }],
            lo_routes: vec![],
            other_interfaces: vec!["eth0".into()],
        };
        let (shortfall, read) = in_fresh_ns(move || {
            let shortfall = write_here(&state).unwrap();
            (shortfall, read_here().unwrap())
        });
        assert_eq!(shortfall.missing, vec!["eth0".to_string()]);
        assert!(shortfall.warnings.is_empty(), "{:?}", shortfall.warnings);
        assert!(read.lo_up);
        assert!(read
            .lo_addresses
            .iter()
            .any(|a| a.address.to_string() == "127.0.0.2" && a.prefix_len == 8));
    }
}
