//! timerfd: clock, remaining time, interval and unread expirations (ticks,
//! put back with TFD_IOC_SET_TICKS).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{FdCtx, FdKind, FilesImage};
use crate::ptrace::Injector;
use crate::sys::Scratch;

const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerFdImage {
    pub clockid: i32,
    pub ticks: u64,
    /// TFD_TIMER_ABSTIME etc. as last set.
    pub settime_flags: u32,
    /// Remaining time to the next expiry (relative), seconds and nanoseconds.
    pub value: (u64, u64),
    pub interval: (u64, u64),
}

fn pair(c: &FdCtx, key: &str) -> Result<(u64, u64)> {
    let v = c.info.get(key)?;
    let bad = || Error::parse(&c.info.path, format!("{key}: {v:?}"));
    let (a, b) = v
        .trim_matches(|ch| ch == '(' || ch == ')')
        .split_once(',')
        .ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

pub fn dump_fd(c: &FdCtx, _: &mut FilesImage) -> Result<FdKind> {
    let num = |k: &str| -> Result<u64> {
        c.info
            .get(k)?
            .trim()
            .parse()
            .map_err(|_| Error::parse(&c.info.path, k.to_string()))
    };
    Ok(FdKind::TimerFd(TimerFdImage {
        clockid: num("clockid")? as i32,
        ticks: num("ticks")?,
        settime_flags: c.info.octal("settime flags")?,
        value: pair(c, "it_value")?,
        interval: pair(c, "it_interval")?,
    }))
}

pub fn restore(inj: &mut Injector, scratch: &Scratch, img: &TimerFdImage) -> Result<u64> {
    let fd = inj.syscall(
        "timerfd_create",
        libc::SYS_timerfd_create,
        &[img.clockid as u64, libc::TFD_CLOEXEC as u64],
    )?;
    // A periodic timer whose expiry is unread shows 0 remaining: the kernel
    // re-arms it only when it is read. Arm it one period on (or at once when
    // no expiry is pending) so that it keeps ticking.
    let value = match (img.value, img.interval) {
        ((0, 0), (0, 0)) => None,
        ((0, 0), iv) if img.ticks > 0 => Some(iv),
        ((0, 0), _) => Some((0, 1)),
        (v, _) => Some(v),
    };
    if let Some(value) = value {
        let mut b = Vec::with_capacity(32);
        for v in [img.interval.0, img.interval.1, value.0, value.1] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let a = scratch.put(0, &b)?;
        // The remaining time is relative: set it without TFD_TIMER_ABSTIME.
        inj.syscall("timerfd_settime", libc::SYS_timerfd_settime, &[fd, 0, a, 0])?;
    }
    if img.ticks > 0 {
        let a = scratch.put(64, &img.ticks.to_ne_bytes())?;
        inj.syscall(
            "ioctl(TFD_IOC_SET_TICKS)",
            libc::SYS_ioctl,
            &[fd, TFD_IOC_SET_TICKS, a],
        )?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timerfd_from_fdinfo() {
        let f = |k: &str, v: &str| (k.to_string(), v.to_string());
        let info = crate::proc::Status {
            path: "fdinfo".into(),
            fields: vec![
                f("clockid", "1"),
                f("ticks", "2"),
                f("settime flags", "01"),
                f("it_value", "(4, 999436411)"),
                f("it_interval", "(0, 10000000)"),
            ],
        };
        let meta = std::fs::metadata("/").unwrap();
        let c = FdCtx {
            pid: 1,
            fd: 4,
            link: "anon_inode:[timerfd]",
            meta: &meta,
            pos: 0,
            info: &info,
        };
        let FdKind::TimerFd(t) = dump_fd(&c, &mut FilesImage::default()).unwrap() else {
            panic!("not timerfd")
        };
        assert_eq!(
            t,
            TimerFdImage {
                clockid: 1,
                ticks: 2,
                settime_flags: 1,
                value: (4, 999_436_411),
                interval: (0, 10_000_000),
            }
        );
    }
}
