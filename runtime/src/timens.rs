//! Clock continuity across a checkpoint: the restored container runs in a
//! time namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME continue from the
//! values the workload saw at the dump, on this host or another, after a
//! reboot or not — they never go backwards.
//!
//! The dumper records the host's clock readings at the dump; the workload's
//! view is those plus the time-namespace offsets it already had (a container
//! restored before), which checkpoint records here as `timens.dump`.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, LinuxTimeOffset, Spec};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// File in the image holding the workload's time-namespace offsets.
pub const TIMENS_DUMP: &str = "timens.dump";

/// Offsets of a time namespace, in nanoseconds (may be negative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    pub monotonic_ns: i128,
    pub boottime_ns: i128,
}

/// The offsets of `pid`'s time namespace (/proc/PID/timens_offsets).
pub fn read(pid: i32) -> Result<Offsets> {
    let path = format!("/proc/{pid}/timens_offsets");
    let text = std::fs::read_to_string(&path).map_err(|e| RuntimeError::io(&path, e))?;
    parse(&text).ok_or_else(|| RuntimeError::InvalidConfig {
        path: path.into(),
        field: "timens_offsets".into(),
        reason: format!("unexpected format: {text:?}"),
    })
}

fn parse(text: &str) -> Option<Offsets> {
    let mut out = Offsets::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (name, secs, nanos) = (f.next()?, f.next()?, f.next()?);
        let ns = secs.parse::<i128>().ok()? * 1_000_000_000 + nanos.parse::<i128>().ok()?;
        match name {
            "monotonic" => out.monotonic_ns = ns,
            "boottime" => out.boottime_ns = ns,
            _ => {}
        }
    }
    Some(out)
}

fn now_ns(clock: nix::time::ClockId) -> Result<i128> {
    let ts = nix::time::clock_gettime(clock).map_err(|e| RuntimeError::sys("clock_gettime", e))?;
    Ok(ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128)
}

/// Offsets that make this host's clocks read, now, what the workload read
/// at the dump (`dumped` host readings + the workload's `previous` offsets).
pub fn offsets_for_restore(
    dumped: &godwit_checkpoint::image::Clocks,
    previous: Offsets,
) -> Result<Offsets> {
    Ok(Offsets {
        monotonic_ns: dumped.monotonic_ns as i128 + previous.monotonic_ns
            - now_ns(nix::time::ClockId::CLOCK_MONOTONIC)?,
        boottime_ns: dumped.boottime_ns as i128 + previous.boottime_ns
            - now_ns(nix::time::ClockId::CLOCK_BOOTTIME)?,
    })
}

fn to_spec_offset(ns: i128) -> LinuxTimeOffset {
    // Seconds rounded down so that nanoseconds stay in [0, 1e9).
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let mut o = LinuxTimeOffset::default();
    o.set_secs(Some(secs));
    o.set_nanosecs(Some(nanos));
    o
}

/// The spec's entry for a new time namespace (no path).
pub fn namespace_entry() -> Result<oci_spec::runtime::LinuxNamespace> {
    LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Time)
        .build()
        .map_err(|e| RuntimeError::InvalidValue {
            what: "time namespace",
            value: String::new(),
            reason: e.to_string(),
        })
}

/// Puts the spec's container in a time namespace with `offsets`.
pub fn apply(spec: &mut Spec, offsets: Offsets) -> Result<()> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Time);
    namespaces.push(namespace_entry()?);
    linux.set_namespaces(Some(namespaces));
    let mut map = std::collections::HashMap::new();
    map.insert(
        "monotonic".to_string(),
        to_spec_offset(offsets.monotonic_ns),
    );
    map.insert("boottime".to_string(), to_spec_offset(offsets.boottime_ns));
    linux.set_time_offsets(Some(map));
    spec.set_linux(Some(linux));
    Ok(())
}

/// Reads `timens.dump` from an image; an image without it had no offsets.
pub fn read_dump(image: &Path) -> Result<Offsets> {
    let path = image.join(TIMENS_DUMP);
    match std::fs::read_to_string(&path) {
        Ok(text) => crate::bundle::parse_json(&path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Offsets::default()),
        Err(e) => Err(RuntimeError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_format() {
        let o = parse("monotonic     -5 100\nboottime  7 0\n").unwrap();
        assert_eq!(o.monotonic_ns, -5_000_000_000 + 100);
        assert_eq!(o.boottime_ns, 7_000_000_000);
    }

    #[test]
    fn spec_offsets_keep_nanoseconds_positive() {
        let o = to_spec_offset(-1_500_000_000);
        assert_eq!((o.secs(), o.nanosecs()), (Some(-2), Some(500_000_000)));
    }
}
