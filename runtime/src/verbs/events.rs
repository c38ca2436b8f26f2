use libcgroups::common::CgroupManager;
use libcontainer::container::ContainerStatus;

use crate::error::{Result, RuntimeError};
use crate::store::{cgroup_manager, StateRoot};

/// One statistics sample, as runc's `events --stats` prints it:
/// `{"type":"stats","id":…,"data":{…}}`.
pub fn stats(root: &StateRoot, id: &str) -> Result<serde_json::Value> {
    let container = root.load(id)?;
    if !matches!(
        container.status(),
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
    ) {
        return Err(RuntimeError::WrongStatus {
            id: id.to_string(),
            op: "read statistics of",
            status: container.status(),
            hint: "it has no processes",
        });
    }
    let manager = cgroup_manager(&container)?;
    let stats = manager.stats().map_err(|e| RuntimeError::cgroup(id, e))?;
    let data = serde_json::to_value(&stats).map_err(|e| RuntimeError::io("stats", e.into()))?;
    Ok(serde_json::json!({ "type": "stats", "id": id, "data": data }))
}

/// Parses runc's interval ("5s", "500ms", "1m") or plain seconds.
pub fn parse_interval(text: &str) -> Result<std::time::Duration> {
    let invalid = || RuntimeError::InvalidValue {
        what: "--interval",
        value: text.to_string(),
        reason: "expected a duration such as 5s, 500ms or 1m".into(),
    };
    let (num, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = num.parse().map_err(|_| invalid())?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => return Err(invalid()),
    };
    if d.is_zero() {
        return Err(invalid());
    }
    Ok(d)
}
