//! Sockets: unix socketpairs (stream, with the bytes queued in each
//! direction), named unix listeners, TCP listeners and bound UDP sockets
//! (IPv4/IPv6). Read from outside on a borrowed fd (pidfd_getfd); unix peers
//! come from sock_diag inside the target's network namespace. A TCP
//! connection is not carried: it comes back closed (see
//! [`SocketImage::TcpConnection`]). Anything else (fds in flight, abstract
//! or connected named unix sockets) is refused by name.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::{self, Scratch};
use crate::threads::{hex, unhex};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SocketImage {
    /// One end of a unix socket pair (or connected unnamed unix sockets).
    UnixPair {
        ino: u64,
        peer: u64,
        sock_type: i32,
        /// Bytes waiting to be read at this end, hex (stream sockets).
        queued: String,
        /// Datagrams waiting to be read at this end, hex each, in order
        /// (datagram and seqpacket sockets).
        #[serde(default)]
        messages: Vec<String>,
    },
    /// A bound (and maybe listening) unix socket with a path.
    UnixNamed {
        path: String,
        sock_type: i32,
        listening: bool,
    },
    /// A TCP socket neither listening nor carried: an established
    /// connection (or one not yet connected). It comes back as a socket that
    /// was never connected, so the workload's next use of it fails (read:
    /// ENOTCONN, write: EPIPE, poll: POLLHUP) and it reconnects; the peer gets
    /// a reset when the dumped process is killed (SO_LINGER 0, see
    /// [`reset_on_close`]).
    TcpConnection { family: i32 },
    /// TCP listener or bound UDP socket.
    Inet {
        family: i32,
        sock_type: i32,
        protocol: i32,
        /// Raw sockaddr bytes, hex.
        addr: String,
        listening: bool,
        reuseaddr: bool,
        reuseport: bool,
        v6only: bool,
    },
}

fn unsupported(c: &FdCtx, what: &str) -> Error {
    Error::UnsupportedFd {
        pid: c.pid,
        fd: c.fd,
        kind: what.to_string(),
    }
}

/// A copy of fd `fd` of host process `pid` in this process.
fn borrow(pid: i32, fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open/pidfd_getfd with integer arguments; results owned.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if pidfd < 0 {
            return Err(Error::sys(
                format!("pidfd_open({pid})"),
                nix::errno::Errno::last(),
            ));
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let f = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        if f < 0 {
            return Err(Error::sys(
                format!("pidfd_getfd(pid {pid}, fd {fd})"),
                nix::errno::Errno::last(),
            ));
        }
        Ok(OwnedFd::from_raw_fd(f as i32))
    }
}

fn sockopt_int(fd: &OwnedFd, level: i32, opt: i32) -> i32 {
    let mut v: i32 = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: valid out-pointers of the right size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    if r == 0 {
        v
    } else {
        0
    }
}

fn sockname(fd: &OwnedFd) -> Vec<u8> {
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: valid out-pointers.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            &mut ss as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    };
    if r != 0 {
        return Vec::new();
    }
    // SAFETY: ss holds len initialized bytes.
    unsafe { std::slice::from_raw_parts(&ss as *const _ as *const u8, len as usize).to_vec() }
}

pub fn dump_fd(c: &FdCtx, _: &mut FilesImage) -> Result<FdKind> {
    let ino: u64 = c
        .link
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::parse(format!("/proc/{}/fd/{}", c.pid, c.fd), c.link))?;
    let s = borrow(c.pid, c.fd)?;
    let family = sockopt_int(&s, libc::SOL_SOCKET, libc::SO_DOMAIN);
    let sock_type = sockopt_int(&s, libc::SOL_SOCKET, libc::SO_TYPE);
    let protocol = sockopt_int(&s, libc::SOL_SOCKET, libc::SO_PROTOCOL);
    let listening = sockopt_int(&s, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != 0;
    if c.info.get("scm_fds").is_ok_and(|v| v != "0") {
        return Err(unsupported(c, "unix socket with fds in flight"));
    }
    match family {
        libc::AF_UNIX => {
            let name = sockname(&s);
            // sun_path after the 2-byte family; empty for unnamed sockets.
            let path: Vec<u8> = name
                .get(2..)
                .unwrap_or(&[])
                .iter()
                .copied()
                .take_while(|&b| b != 0)
                .collect();
            if !path.is_empty() && name.get(2) != Some(&0) {
                if !listening && sock_type == libc::SOCK_STREAM {
                    return Err(unsupported(c, "connected named unix socket"));
                }
                return Ok(FdKind::Socket(SocketImage::UnixNamed {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    sock_type,
                    listening,
                }));
            }
            if name.len() > 2 {
                return Err(unsupported(c, "abstract unix socket"));
            }
            let peer =
                unix_peer(c.pid, ino)?.ok_or_else(|| unsupported(c, "unconnected unix socket"))?;
            let (queued, messages) = if sock_type == libc::SOCK_STREAM {
                (peek_all(&s), Vec::new())
            } else {
                (
                    Vec::new(),
                    peek_messages(&s).iter().map(|m| hex(m)).collect(),
                )
            };
            Ok(FdKind::Socket(SocketImage::UnixPair {
                ino,
                peer,
                sock_type,
                queued: hex(&queued),
                messages,
            }))
        }
        libc::AF_INET | libc::AF_INET6 => {
            let tcp = sock_type == libc::SOCK_STREAM;
            if tcp && !listening {
                return Ok(FdKind::Socket(SocketImage::TcpConnection { family }));
            }
            if !tcp && sock_type != libc::SOCK_DGRAM {
                return Err(unsupported(c, "raw inet socket"));
            }
            Ok(FdKind::Socket(SocketImage::Inet {
                family,
                sock_type,
                protocol,
                addr: hex(&sockname(&s)),
                listening,
                reuseaddr: sockopt_int(&s, libc::SOL_SOCKET, libc::SO_REUSEADDR) != 0,
                reuseport: sockopt_int(&s, libc::SOL_SOCKET, libc::SO_REUSEPORT) != 0,
                v6only: family == libc::AF_INET6
                    && sockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) != 0,
            }))
        }
        f => Err(unsupported(c, &format!("socket of family {f}"))),
    }
}

/// Bytes queued for reading on a stream socket, without consuming them.
fn peek_all(s: &OwnedFd) -> Vec<u8> {
    let mut n: i32 = 0;
    // SAFETY: FIONREAD into an int.
    unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize];
    // SAFETY: buf has n bytes.
    let got = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    buf.truncate(got.max(0) as usize);
    buf
}

/// Datagrams queued on a datagram/seqpacket socket, in order, without
/// consuming them: MSG_PEEK with a peek offset (SO_PEEK_OFF) that walks the
/// queue; the socket's own peek offset is put back.
fn peek_messages(s: &OwnedFd) -> Vec<Vec<u8>> {
    let fd = s.as_raw_fd();
    let old = sockopt_int(s, libc::SOL_SOCKET, libc::SO_PEEK_OFF);
    let set = |v: i32| {
        // SAFETY: setsockopt with an int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEEK_OFF,
                &v as *const i32 as *const libc::c_void,
                4,
            )
        }
    };
    let mut out = Vec::new();
    if set(0) != 0 {
        return out;
    }
    let mut buf = vec![0u8; 256 << 10];
    for _ in 0..100_000 {
        // SAFETY: buf is ours.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
        out.push(buf[..n as usize].to_vec());
    }
    set(old);
    out
}

/// The peer inode of unix socket `ino`, asked from sock_diag inside the
/// network namespace of `pid`.
fn unix_peer(pid: i32, ino: u64) -> Result<Option<u64>> {
    let ns = format!("/proc/{pid}/ns/net");
    let nsf = std::fs::File::open(&ns).map_err(|e| Error::io(&ns, e))?;
    std::thread::scope(|s| {
        s.spawn(move || -> Result<Option<u64>> {
            // SAFETY: setns of this helper thread only.
            if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(Error::sys(
                    format!("setns({ns})"),
                    nix::errno::Errno::last(),
                ));
            }
            unix_diag_peer(ino as u32)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::sys("sock_diag thread", nix::errno::Errno::EIO)))
    })
}

fn unix_diag_peer(ino: u32) -> Result<Option<u64>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 4;
    const UNIX_DIAG_PEER: u16 = 2;
    let err = |what: &str| {
        Error::sys(
            format!("sock_diag unix ino {ino}: {what}"),
            nix::errno::Errno::last(),
        )
    };
    // SAFETY: plain socket/send/recv on buffers we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return Err(err("socket"));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut req = Vec::with_capacity(40);
        req.extend_from_slice(&40u32.to_ne_bytes());
        req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        req.extend_from_slice(&1u32.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        // struct unix_diag_req
        req.push(libc::AF_UNIX as u8);
        req.push(0);
        req.extend_from_slice(&0u16.to_ne_bytes());
        req.extend_from_slice(&u32::MAX.to_ne_bytes());
        req.extend_from_slice(&ino.to_ne_bytes());
        req.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
        req.extend_from_slice(&u32::MAX.to_ne_bytes());
        req.extend_from_slice(&u32::MAX.to_ne_bytes());
        if libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) < 0 {
            return Err(err("send"));
        }
        let mut buf = vec![0u8; 8192];
        let n = libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
        if n < 16 {
            return Err(err("recv"));
        }
        let buf = &buf[..n as usize];
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        if ty == libc::NLMSG_ERROR as u16 {
            return Ok(None);
        }
        let len = (u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize).min(buf.len());
        // nlmsghdr (16) + unix_diag_msg (16), then attributes.
        let mut off = 32;
        while off + 4 <= len {
            let alen = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
            let aty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]);
            if alen < 4 {
                break;
            }
            if aty == UNIX_DIAG_PEER && off + 8 <= len {
                let p =
                    u32::from_ne_bytes([buf[off + 4], buf[off + 5], buf[off + 6], buf[off + 7]]);
                return Ok((p != 0).then_some(p as u64));
            }
            off += (alen + 3) & !3;
        }
        Ok(None)
    }
}

/// Unix socket pairs recreated so far in the tree (like pipes): the first
/// end needed creates the pair; ends wait in spare fds of the creator.
pub struct PairTable {
    /// socket ino → (creator ns pid, creator host pid, spare fd)
    ends: HashMap<u64, (i32, i32, u64)>,
    /// Ends whose queued bytes are still to be written (through the peer).
    pending: Vec<(u64, Vec<u8>)>,
    /// Ends whose queued datagrams are still to be sent (through the peer).
    pending_msgs: Vec<(u64, Vec<Vec<u8>>)>,
    /// Lowest spare fd: above every fd number still to be restored.
    spare_min: u64,
}

impl PairTable {
    pub fn new(spare_min: u64) -> Self {
        PairTable {
            ends: HashMap::new(),
            pending: Vec::new(),
            pending_msgs: Vec::new(),
            spare_min,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn end(
        &mut self,
        inj: &mut Injector,
        scratch: &Scratch,
        ns_pid: i32,
        host_pid: i32,
        img: &SocketImage,
    ) -> Result<u64> {
        let SocketImage::UnixPair {
            ino,
            peer,
            sock_type,
            queued,
            messages,
        } = img
        else {
            return Err(Error::restore(ns_pid, "not a socket pair"));
        };
        if !self.ends.contains_key(ino) {
            let a = scratch.put(0, &[0u8; 8])?;
            inj.syscall(
                "socketpair",
                libc::SYS_socketpair,
                &[
                    libc::AF_UNIX as u64,
                    (*sock_type | libc::SOCK_CLOEXEC) as u64,
                    0,
                    a,
                ],
            )?;
            let b = scratch.get(0, 8)?;
            for (i, sock) in [*ino, *peer].into_iter().enumerate() {
                let fd =
                    i32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4])) as u64;
                let hi = inj.syscall(
                    "fcntl(F_DUPFD_CLOEXEC)",
                    libc::SYS_fcntl,
                    &[fd, libc::F_DUPFD_CLOEXEC as u64, self.spare_min],
                )?;
                inj.syscall("close", libc::SYS_close, &[fd])?;
                self.ends.insert(sock, (ns_pid, host_pid, hi));
            }
        }
        let data = unhex(queued).ok_or_else(|| Error::restore(ns_pid, "bad socket data"))?;
        if !data.is_empty() {
            self.pending.push((*peer, data));
        }
        if !messages.is_empty() {
            let msgs = messages
                .iter()
                .map(|m| unhex(m).ok_or_else(|| Error::restore(ns_pid, "bad socket message")))
                .collect::<Result<Vec<_>>>()?;
            self.pending_msgs.push((*peer, msgs));
        }
        let &(creator, _, spare) = self
            .ends
            .get(ino)
            .ok_or_else(|| Error::restore(ns_pid, "socket pair end"))?;
        sys::get_fd(inj, ns_pid, creator, spare)
    }

    /// Writes queued bytes through the peers (from this process, on borrowed
    /// fds) and lists the spares to close.
    pub fn finish(&mut self) -> Result<Vec<(i32, u64)>> {
        for (peer, data) in std::mem::take(&mut self.pending) {
            let &(_, host, spare) = self
                .ends
                .get(&peer)
                .ok_or_else(|| Error::restore(0, format!("socket {peer}: peer not restored")))?;
            let s = borrow(host, spare as i32)?;
            let mut f = std::fs::File::from(s);
            f.write_all(&data)
                .map_err(|e| Error::io(format!("/proc/{host}/fd/{spare}"), e))?;
        }
        for (peer, msgs) in std::mem::take(&mut self.pending_msgs) {
            let &(_, host, spare) = self
                .ends
                .get(&peer)
                .ok_or_else(|| Error::restore(0, format!("socket {peer}: peer not restored")))?;
            let s = borrow(host, spare as i32)?;
            for m in msgs {
                // SAFETY: send of our buffer on our borrowed fd: one datagram each.
                let n = unsafe {
                    libc::send(
                        s.as_raw_fd(),
                        m.as_ptr().cast(),
                        m.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n != m.len() as isize {
                    return Err(Error::io(
                        format!("/proc/{host}/fd/{spare}"),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
        }
        Ok(self.ends.values().map(|&(p, _, fd)| (p, fd)).collect())
    }
}

/// Named unix sockets and inet sockets: created, bound and listening again.
pub fn restore_bound(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    img: &SocketImage,
) -> Result<u64> {
    match img {
        SocketImage::UnixNamed {
            path,
            sock_type,
            listening,
        } => {
            // bind(2) and unlink(2) take no resolve flags: the directory
            // the socket lives in must be reachable inside the container's
            // root without magic links, as every other image path.
            let dir = match path.rsplit_once('/') {
                Some(("", _)) => "/",
                Some((d, _)) => d,
                None => ".",
            };
            let what = "unix socket directory";
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
            let dfd = if dir.starts_with('/') {
                sys::open_image_path(inj, scratch, ns_pid, what, dir, flags, 0)?
            } else {
                sys::open_image_path_beneath_cwd(inj, scratch, ns_pid, what, dir, flags)?
            };
            inj.syscall("close", libc::SYS_close, &[dfd])?;
            if path.len() > 107 {
                return Err(Error::restore(
                    ns_pid,
                    format!("unix socket path {path:?} is longer than sun_path"),
                ));
            }
            let fd = inj.syscall(
                "socket(AF_UNIX)",
                libc::SYS_socket,
                &[
                    libc::AF_UNIX as u64,
                    (*sock_type | libc::SOCK_CLOEXEC) as u64,
                    0,
                ],
            )?;
            // The old socket file is still there: replace it.
            let p = scratch.put_cstr(sys::PATH_OFF, path)?;
            let _ = inj.raw_syscall(libc::SYS_unlinkat, &[libc::AT_FDCWD as u64, p, 0]);
            let mut addr = vec![0u8; 110];
            addr[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
            let pb = path.as_bytes();
            addr[2..2 + pb.len().min(107)].copy_from_slice(&pb[..pb.len().min(107)]);
            let a = scratch.put(0, &addr)?;
            inj.syscall("bind(unix)", libc::SYS_bind, &[fd, a, addr.len() as u64])?;
            if *listening {
                inj.syscall("listen", libc::SYS_listen, &[fd, libc::SOMAXCONN as u64])?;
            }
            Ok(fd)
        }
        SocketImage::Inet {
            family,
            sock_type,
            protocol,
            addr,
            listening,
            reuseaddr,
            reuseport,
            v6only,
        } => {
            let fd = inj.syscall(
                "socket(inet)",
                libc::SYS_socket,
                &[
                    *family as u64,
                    (*sock_type | libc::SOCK_CLOEXEC) as u64,
                    *protocol as u64,
                ],
            )?;
            let one = scratch.put(512, &1i32.to_ne_bytes())?;
            let mut opts = Vec::new();
            if *reuseaddr {
                opts.push((libc::SOL_SOCKET, libc::SO_REUSEADDR));
            }
            if *reuseport {
                opts.push((libc::SOL_SOCKET, libc::SO_REUSEPORT));
            }
            if *v6only {
                opts.push((libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
            }
            for (level, opt) in opts {
                inj.syscall(
                    "setsockopt",
                    libc::SYS_setsockopt,
                    &[fd, level as u64, opt as u64, one, 4],
                )?;
            }
            let sa = unhex(addr).ok_or_else(|| Error::restore(0, "bad socket address"))?;
            let a = scratch.put(0, &sa)?;
            inj.syscall("bind(inet)", libc::SYS_bind, &[fd, a, sa.len() as u64])?;
            if *listening {
                inj.syscall("listen", libc::SYS_listen, &[fd, libc::SOMAXCONN as u64])?;
            }
            Ok(fd)
        }
        SocketImage::TcpConnection { family } => inj.syscall(
            "socket(tcp, closed)",
            libc::SYS_socket,
            &[
                *family as u64,
                (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64,
                0,
            ],
        ),
        SocketImage::UnixPair { .. } => {
            Err(Error::restore(0, "socket pair restored as bound socket"))
        }
    }
}

/// Makes the connection on fd `fd` of host process `pid` end with a reset
/// when its last holder closes it (SO_LINGER with a zero timeout), as a
/// connection that was not carried must: the peer is not left waiting on
/// one that will never answer again. Only for a tree that is about to be
/// killed.
pub fn reset_on_close(pid: i32, fd: i32) -> Result<()> {
    let s = borrow(pid, fd)?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a linger struct of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(Error::sys(
            format!("setsockopt(SO_LINGER) on pid {pid} fd {fd}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}
