use libcgroups::common::{CgroupManager, ControllerOpt};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use crate::bundle::parse_json;
use crate::cli::Update;
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

/// The resources an `update` asks for, from `--resources FILE` or the flags.
pub fn resources(args: &Update) -> Result<LinuxResources> {
    for (flag, given) in [
        ("--kernel-memory", args.kernel_memory.is_some()),
        ("--kernel-memory-tcp", args.kernel_memory_tcp.is_some()),
        ("--l3-cache-schema", args.l3_cache_schema.is_some()),
        ("--mem-bw-schema", args.mem_bw_schema.is_some()),
    ] {
        if given {
            return Err(RuntimeError::Unsupported {
                flag,
                reason: "not supported by godwit (kernel memory limits are gone from current \
                         kernels; Intel RDT is not managed by update); omit the flag"
                    .into(),
            });
        }
    }
    if let Some(path) = &args.resources {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| RuntimeError::io(path, e))?
        } else {
            std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?
        };
        return parse_json(path, &text);
    }
    let build_err = |e: oci_spec::OciSpecError| RuntimeError::InvalidValue {
        what: "resources",
        value: String::new(),
        reason: e.to_string(),
    };
    let mut res = LinuxResourcesBuilder::default();
    if args.memory.is_some() || args.memory_swap.is_some() || args.memory_reservation.is_some() {
        let mut mem = LinuxMemoryBuilder::default();
        if let Some(m) = &args.memory {
            mem = mem.limit(parse_size("--memory", m)?);
        }
        if let Some(m) = &args.memory_swap {
            mem = mem.swap(parse_size("--memory-swap", m)?);
        }
        if let Some(m) = &args.memory_reservation {
            mem = mem.reservation(parse_size("--memory-reservation", m)?);
        }
        res = res.memory(mem.build().map_err(build_err)?);
    }
    let cpu_given = args.cpu_shares.is_some()
        || args.cpu_period.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_rt_period.is_some()
        || args.cpu_rt_runtime.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some();
    if cpu_given {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(v) = args.cpu_shares {
            cpu = cpu.shares(v);
        }
        if let Some(v) = args.cpu_period {
            cpu = cpu.period(v);
        }
        if let Some(v) = args.cpu_quota {
            cpu = cpu.quota(v);
        }
        if let Some(v) = args.cpu_rt_period {
            cpu = cpu.realtime_period(v);
        }
        if let Some(v) = args.cpu_rt_runtime {
            cpu = cpu.realtime_runtime(v);
        }
        if let Some(v) = &args.cpuset_cpus {
            cpu = cpu.cpus(v.clone());
        }
        if let Some(v) = &args.cpuset_mems {
            cpu = cpu.mems(v.clone());
        }
        res = res.cpu(cpu.build().map_err(build_err)?);
    }
    if let Some(limit) = args.pids_limit {
        res = res.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(build_err)?,
        );
    }
    if let Some(weight) = args.blkio_weight {
        res = res.block_io(
            LinuxBlockIoBuilder::default()
                .weight(weight)
                .build()
                .map_err(build_err)?,
        );
    }
    res.build().map_err(build_err)
}

pub fn update(root: &StateRoot, args: &Update) -> Result<()> {
    let id = args.container_id.as_str();
    let resources = resources(args)?;
    let container = root.load(id)?;
    let manager = cgroup_manager(&container)?;
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| RuntimeError::cgroup(id, e))?;
    tracing::info!(id, "updated resources");
    Ok(())
}
