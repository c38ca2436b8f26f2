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
            status: crate::verbs::state::status_name(container.status()),
            hint: "it has no processes",
        });
    }
    let manager = cgroup_manager(&container)?;
    let stats = manager.stats().map_err(|e| RuntimeError::cgroup(id, e))?;
    Ok(serde_json::json!({ "type": "stats", "id": id, "data": runc_stats(&stats) }))
}

/// libcgroups' statistics in the shape of runc's `events` types, which is
/// what tools that parse `runc events --stats` expect.
fn runc_stats(s: &libcgroups::stats::Stats) -> serde_json::Value {
    let mem = |d: &libcgroups::stats::MemoryData| {
        serde_json::json!({
            "limit": d.limit, "usage": d.usage, "max": d.max_usage, "failcnt": d.fail_count
        })
    };
    let blkio = |v: &[libcgroups::stats::BlkioDeviceStat]| {
        v.iter()
            .map(|e| {
                serde_json::json!({
                    "major": e.major, "minor": e.minor, "op": e.op_type, "value": e.value
                })
            })
            .collect::<Vec<_>>()
    };
    let hugetlb: serde_json::Map<String, serde_json::Value> = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            (
                size.clone(),
                serde_json::json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.fail_count}),
            )
        })
        .collect();
    serde_json::json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage.usage_total,
                "percpu": s.cpu.usage.per_core_usage_total,
                "percpu_kernel": s.cpu.usage.per_core_usage_kernel,
                "percpu_user": s.cpu.usage.per_core_usage_user,
                "kernel": s.cpu.usage.usage_kernel,
                "user": s.cpu.usage.usage_user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttled_periods": s.cpu.throttling.throttled_periods,
                "throttled_time": s.cpu.throttling.throttled_time,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": mem(&s.memory.memory),
            "swap_usage": mem(&s.memory.memswap),
            "kernel_usage": mem(&s.memory.kernel),
            "kernel_tcp_usage": mem(&s.memory.kernel_tcp),
            "use_hierarchy": s.memory.hierarchy,
            "raw": s.memory.stats,
        },
        "pids": { "current": s.pids.current, "limit": s.pids.limit },
        "blkio": {
            "ioServiceBytesRecursive": blkio(&s.blkio.service_bytes),
            "ioServicedRecursive": blkio(&s.blkio.serviced),
            "ioQueueRecursive": blkio(&s.blkio.queued),
            "ioServiceTimeRecursive": blkio(&s.blkio.service_time),
            "ioWaitTimeRecursive": blkio(&s.blkio.wait_time),
            "ioMergedRecursive": blkio(&s.blkio.merged),
            "ioTimeRecursive": blkio(&s.blkio.time),
            "sectorsRecursive": blkio(&s.blkio.sectors),
        },
        "hugetlb": hugetlb,
    })
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
