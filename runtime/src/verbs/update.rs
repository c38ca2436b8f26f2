use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::LinuxResources;

use crate::error::{Result, RuntimeError};
use crate::store::{cgroup_manager, StateRoot};

/// Parses a size as runc does: bytes, or a number with b/k/m/g/t (binary units);
/// "-1" means unlimited.
pub fn parse_size(what: &'static str, text: &str) -> Result<i64> {
    let invalid = || RuntimeError::InvalidValue {
        what,
        value: text.to_string(),
        reason: "expected bytes or a number with k, m, g or t (e.g. 64m); -1 for unlimited".into(),
    };
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ib")
        .or(lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| invalid())?;
    if !n.is_finite() || n < 0.0 {
        return Err(invalid());
    }
    Ok((n * mult as f64) as i64)
}

/// Applies `resources` to container `id`'s cgroups.
pub fn update(root: &StateRoot, id: &str, resources: &LinuxResources) -> Result<()> {
    let container = root.load(id)?;
    let manager = cgroup_manager(&container)?;
    manager
        .apply(&ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| RuntimeError::cgroup(id, e))?;
    tracing::info!(id, "updated resources");
    Ok(())
}
