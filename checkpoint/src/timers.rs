//! Interval timers (ITIMER_REAL/VIRTUAL/PROF) and POSIX timers: only the
//! process can read their settings, so by injected getitimer/timer_gettime.
//! The remaining time is carried as is (time frozen is not counted);
//! overrun counts are not.

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
    #[serde(default)]
    pub posix: Vec<PosixTimer>,
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
    Ok(TimersImage {
        itimers,
        posix: Vec::new(),
    })
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

/// A POSIX timer (timer_create): id, clock, notification and its setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub signo: i32,
    pub sigev_value: u64,
    /// SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD_ID.
    pub notify: i32,
    /// Target thread (ns tid) for SIGEV_THREAD_ID.
    pub tid: i32,
    pub interval_ns: u64,
    pub value_ns: u64,
}

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD_ID: i32 = 4;
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

/// Parses /proc/PID/timers; `ns_tid` maps a host tid to its ns tid.
pub fn dump_posix(
    pid: i32,
    inj: &mut Injector,
    scratch: &Scratch,
    ns_tid: impl Fn(i32) -> Option<i32>,
) -> Result<Vec<PosixTimer>> {
    let path = format!("/proc/{pid}/timers");
    let text = crate::proc::read_string(&path)?;
    let bad = |what: &str| crate::error::Error::parse(&path, what.to_string());
    let mut timers: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "ID" => timers.push(PosixTimer {
                id: v.parse().map_err(|_| bad("ID"))?,
                ..Default::default()
            }),
            "signal" => {
                let t = timers.last_mut().ok_or_else(|| bad("signal before ID"))?;
                let (s, val) = v.split_once('/').ok_or_else(|| bad("signal"))?;
                t.signo = s.parse().map_err(|_| bad("signo"))?;
                t.sigev_value = u64::from_str_radix(val.trim_start_matches("0x"), 16)
                    .map_err(|_| bad("sigev value"))?;
            }
            "notify" => {
                let t = timers.last_mut().ok_or_else(|| bad("notify before ID"))?;
                let (how, who) = v.split_once('/').ok_or_else(|| bad("notify"))?;
                t.notify = match how {
                    "signal" => SIGEV_SIGNAL,
                    "none" => SIGEV_NONE,
                    "thread" => SIGEV_THREAD_ID,
                    _ => return Err(bad("notify kind")),
                };
                if t.notify == SIGEV_THREAD_ID {
                    let host: i32 = who
                        .rsplit('.')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| bad("notify tid"))?;
                    t.tid = ns_tid(host).ok_or_else(|| bad("notify tid outside the process"))?;
                }
            }
            "ClockID" => {
                let t = timers.last_mut().ok_or_else(|| bad("ClockID before ID"))?;
                t.clock = v.parse().map_err(|_| bad("ClockID"))?;
            }
            _ => {}
        }
    }
    for t in &mut timers {
        inj.syscall(
            "timer_gettime",
            libc::SYS_timer_gettime,
            &[t.id as u64, scratch.addr],
        )?;
        let b = scratch.get(0, 32)?;
        let w = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        t.interval_ns = w(0) * 1_000_000_000 + w(8);
        t.value_ns = w(16) * 1_000_000_000 + w(24);
    }
    Ok(timers)
}

/// Recreates POSIX timers with their ids (PR_TIMER_CREATE_RESTORE_IDS) once
/// the process's threads exist, and arms them with the remaining time.
pub fn restore_posix(inj: &mut Injector, scratch: &Scratch, timers: &[PosixTimer]) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    inj.syscall(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, on)",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0],
    )?;
    let mut result = Ok(());
    for t in timers {
        // struct sigevent: value, signo, notify, then the tid (64 bytes).
        let mut ev = vec![0u8; 64];
        ev[0..8].copy_from_slice(&t.sigev_value.to_ne_bytes());
        ev[8..12].copy_from_slice(&t.signo.to_ne_bytes());
        ev[12..16].copy_from_slice(&t.notify.to_ne_bytes());
        ev[16..20].copy_from_slice(&t.tid.to_ne_bytes());
        let evp = scratch.put(0, &ev)?;
        let idp = scratch.put(64, &t.id.to_ne_bytes())?;
        if let Err(e) = inj.syscall(
            "timer_create",
            libc::SYS_timer_create,
            &[t.clock as u64, evp, idp],
        ) {
            result = Err(e);
            break;
        }
        if t.value_ns != 0 {
            let mut its = Vec::with_capacity(32);
            for v in [
                t.interval_ns / 1_000_000_000,
                t.interval_ns % 1_000_000_000,
                t.value_ns / 1_000_000_000,
                t.value_ns % 1_000_000_000,
            ] {
                its.extend_from_slice(&v.to_ne_bytes());
            }
            let a = scratch.put(128, &its)?;
            if let Err(e) = inj.syscall(
                "timer_settime",
                libc::SYS_timer_settime,
                &[t.id as u64, 0, a, 0],
            ) {
                result = Err(e);
                break;
            }
        }
    }
    inj.syscall(
        "prctl(PR_TIMER_CREATE_RESTORE_IDS, off)",
        libc::SYS_prctl,
        &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0],
    )?;
    result
}
