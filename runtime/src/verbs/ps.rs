use libcgroups::common::CgroupManager;

use crate::error::{Result, RuntimeError};
use crate::store::{cgroup_manager, StateRoot};

/// Host pids of every process in the container's cgroup.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>> {
    let container = root.load(id)?;
    let manager = cgroup_manager(&container)?;
    let pids = manager
        .get_all_pids()
        .map_err(|e| RuntimeError::cgroup(id, e))?;
    let mut pids: Vec<i32> = pids.iter().map(|p| p.as_raw()).collect();
    pids.sort_unstable();
    Ok(pids)
}

/// ps(1)'s output (default `-ef`) restricted to the given pids.
pub fn table(pids: &[i32], ps_options: &[String]) -> Result<String> {
    let default = ["-ef".to_string()];
    let options = if ps_options.is_empty() {
        &default[..]
    } else {
        ps_options
    };
    let output = std::process::Command::new("ps")
        .args(options)
        .output()
        .map_err(|e| RuntimeError::io("ps", e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| RuntimeError::InvalidValue {
            what: "ps options",
            value: options.join(" "),
            reason: "ps printed no PID column".into(),
        })?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}
