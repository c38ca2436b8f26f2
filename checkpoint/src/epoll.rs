//! epoll: the interest list (target fd, events, data) from fdinfo. Restored
//! after every other fd of the process exists, so targets can be added.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::Scratch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollTarget {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollImage {
    pub targets: Vec<EpollTarget>,
}

pub fn dump_fd(c: &FdCtx, _: &mut FilesImage) -> Result<FdKind> {
    let mut targets = Vec::new();
    for (k, v) in &c.info.fields {
        if k != "tfd" {
            continue;
        }
        // "3 events: 80000019 data: 3  pos:0 ino:40e sdev:10"
        let bad = || Error::parse(&c.info.path, format!("tfd line {v:?}"));
        let w: Vec<&str> = v.split_whitespace().collect();
        let fd: i32 = w.first().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let at = |key: &str| w.iter().position(|s| *s == key).and_then(|i| w.get(i + 1));
        let events = at("events:")
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or_else(bad)?;
        let data = at("data:")
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(bad)?;
        targets.push(EpollTarget { fd, events, data });
    }
    Ok(FdKind::Epoll(EpollImage { targets }))
}

pub fn create(inj: &mut Injector) -> Result<u64> {
    inj.syscall(
        "epoll_create1",
        libc::SYS_epoll_create1,
        &[libc::EPOLL_CLOEXEC as u64],
    )
}

/// Adds the interest list to the epoll instance at `epfd`.
pub fn add_targets(
    inj: &mut Injector,
    scratch: &Scratch,
    epfd: i32,
    img: &EpollImage,
) -> Result<()> {
    for t in &img.targets {
        // struct epoll_event is packed on x86-64: u32 events, u64 data.
        let mut b = Vec::with_capacity(12);
        b.extend_from_slice(&t.events.to_ne_bytes());
        b.extend_from_slice(&t.data.to_ne_bytes());
        let a = scratch.put(0, &b)?;
        inj.syscall(
            "epoll_ctl(ADD)",
            libc::SYS_epoll_ctl,
            &[epfd as u64, libc::EPOLL_CTL_ADD as u64, t.fd as u64, a],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_list_from_fdinfo() {
        let info = crate::proc::Status {
            path: "fdinfo".into(),
            fields: vec![
                ("pos".into(), "0".into()),
                (
                    "tfd".into(),
                    "3 events: 80000019 data:                3  pos:0 ino:40e sdev:10".into(),
                ),
                (
                    "tfd".into(),
                    "12 events:       19 data:     e100  pos:0 ino:40e sdev:10".into(),
                ),
            ],
        };
        let meta = std::fs::metadata("/").unwrap();
        let c = FdCtx {
            pid: 1,
            fd: 6,
            link: "anon_inode:[eventpoll]",
            meta: &meta,
            pos: 0,
            info: &info,
        };
        let FdKind::Epoll(e) = dump_fd(&c, &mut FilesImage::default()).unwrap() else {
            panic!("not epoll")
        };
        assert_eq!(
            e.targets,
            vec![
                EpollTarget {
                    fd: 3,
                    events: 0x8000_0019,
                    data: 3
                },
                EpollTarget {
                    fd: 12,
                    events: 0x19,
                    data: 0xe100
                },
            ]
        );
    }
}
