//! Interval timers (ITIMER_REAL/VIRTUAL/PROF): only the process can read
//! them, so by injected getitimer/setitimer. The remaining time is carried
//! as is (time frozen is not counted).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ptrace::Injector;
use crate::sys::Scratch;

/// `struct itimerval` in microseconds: (interval, value).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Itimer {
    pub interval_us: u64,
    pub value_us: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimersImage {
    /// Indexed by ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF.
    pub itimers: Vec<Itimer>,
}

fn to_us(sec: u64, usec: u64) -> u64 {
    sec * 1_000_000 + usec
}

pub fn dump(inj: &mut Injector, scratch: &Scratch) -> Result<TimersImage> {
    let mut itimers = Vec::new();
    for which in 0..3u64 {
        inj.syscall("getitimer", libc::SYS_getitimer, &[which, scratch.addr])?;
        let b = scratch.get(0, 32)?;
        let w = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        itimers.push(Itimer {
            interval_us: to_us(w(0), w(8)),
            value_us: to_us(w(16), w(24)),
        });
    }
    Ok(TimersImage { itimers })
}

pub fn restore(inj: &mut Injector, scratch: &Scratch, img: &TimersImage) -> Result<()> {
    for (which, t) in img.itimers.iter().enumerate() {
        if t.value_us == 0 && t.interval_us == 0 {
            continue;
        }
        let mut b = Vec::with_capacity(32);
        for v in [
            t.interval_us / 1_000_000,
            t.interval_us % 1_000_000,
            t.value_us / 1_000_000,
            // A zero value would disarm the timer: fire at once instead.
            (t.value_us % 1_000_000).max(u64::from(t.value_us == 0)),
        ] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let a = scratch.put(0, &b)?;
        inj.syscall("setitimer", libc::SYS_setitimer, &[which as u64, a, 0])?;
    }
    Ok(())
}
