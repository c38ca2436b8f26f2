//! libcgroups' statistics in containerd's metrics types: cgroups v1 `Metrics`
//! (type `io.containerd.cgroups.v1.Metrics`, what `ctr task metrics` decodes on
//! a v1 or hybrid host) and v2 `Metrics` on a unified host.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use libcgroups::common::CgroupSetup;
use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};

use crate::error::{Result, ShimError};

pub fn to_any(stats: &Stats, setup: CgroupSetup) -> Result<Any> {
    let (type_url, value) = match setup {
        CgroupSetup::Unified => (
            "io.containerd.cgroups.v2.Metrics",
            v2_metrics(stats).write_to_bytes(),
        ),
        _ => (
            "io.containerd.cgroups.v1.Metrics",
            v1_metrics(stats).write_to_bytes(),
        ),
    };
    let value = value.map_err(|e| ShimError::invalid("metrics", e.to_string()))?;
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = value;
    Ok(any)
}

fn v1_metrics(s: &Stats) -> v1::Metrics {
    let entry = |d: &MemoryData| v1::MemoryEntry {
        limit: d.limit,
        usage: d.usage,
        max: d.max_usage,
        failcnt: d.fail_count,
        ..Default::default()
    };
    let raw = |key: &str| s.memory.stats.get(key).copied().unwrap_or(0);
    let blkio = |v: &[BlkioDeviceStat]| -> Vec<v1::BlkIOEntry> {
        v.iter()
            .map(|e| v1::BlkIOEntry {
                op: e.op_type.clone().unwrap_or_default(),
                major: e.major,
                minor: e.minor,
                value: e.value,
                ..Default::default()
            })
            .collect()
    };
    v1::Metrics {
        pids: MessageField::some(v1::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: s.cpu.usage.usage_total,
                kernel: s.cpu.usage.usage_kernel,
                user: s.cpu.usage.usage_user,
                per_cpu: s.cpu.usage.per_core_usage_total.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: s.cpu.throttling.periods,
                throttled_periods: s.cpu.throttling.throttled_periods,
                throttled_time: s.cpu.throttling.throttled_time,
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(v1::MemoryStat {
            cache: s.memory.cache,
            rss: raw("rss"),
            rss_huge: raw("rss_huge"),
            mapped_file: raw("mapped_file"),
            dirty: raw("dirty"),
            writeback: raw("writeback"),
            pg_pg_in: raw("pgpgin"),
            pg_pg_out: raw("pgpgout"),
            pg_fault: raw("pgfault"),
            pg_maj_fault: raw("pgmajfault"),
            inactive_anon: raw("inactive_anon"),
            active_anon: raw("active_anon"),
            inactive_file: raw("inactive_file"),
            active_file: raw("active_file"),
            unevictable: raw("unevictable"),
            hierarchical_memory_limit: raw("hierarchical_memory_limit"),
            hierarchical_swap_limit: raw("hierarchical_memsw_limit"),
            total_cache: raw("total_cache"),
            total_rss: raw("total_rss"),
            total_rss_huge: raw("total_rss_huge"),
            total_mapped_file: raw("total_mapped_file"),
            total_dirty: raw("total_dirty"),
            total_writeback: raw("total_writeback"),
            total_pg_pg_in: raw("total_pgpgin"),
            total_pg_pg_out: raw("total_pgpgout"),
            total_pg_fault: raw("total_pgfault"),
            total_pg_maj_fault: raw("total_pgmajfault"),
            total_inactive_anon: raw("total_inactive_anon"),
            total_active_anon: raw("total_active_anon"),
            total_inactive_file: raw("total_inactive_file"),
            total_active_file: raw("total_active_file"),
            total_unevictable: raw("total_unevictable"),
            usage: MessageField::some(entry(&s.memory.memory)),
            swap: MessageField::some(entry(&s.memory.memswap)),
            kernel: MessageField::some(entry(&s.memory.kernel)),
            kernel_tcp: MessageField::some(entry(&s.memory.kernel_tcp)),
            ..Default::default()
        }),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: blkio(&s.blkio.service_bytes),
            io_serviced_recursive: blkio(&s.blkio.serviced),
            io_queued_recursive: blkio(&s.blkio.queued),
            io_service_time_recursive: blkio(&s.blkio.service_time),
            io_wait_time_recursive: blkio(&s.blkio.wait_time),
            io_merged_recursive: blkio(&s.blkio.merged),
            io_time_recursive: blkio(&s.blkio.time),
            sectors_recursive: blkio(&s.blkio.sectors),
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v1::HugetlbStat {
                usage: h.usage,
                max: h.max_usage,
                failcnt: h.fail_count,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn v2_metrics(s: &Stats) -> v2::Metrics {
    let raw = |key: &str| s.memory.stats.get(key).copied().unwrap_or(0);
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: s.pids.current,
            limit: s.pids.limit,
            ..Default::default()
        }),
        // libcgroups reports v2 CPU time in nanoseconds, as v1 does.
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: s.cpu.usage.usage_total / 1000,
            user_usec: s.cpu.usage.usage_user / 1000,
            system_usec: s.cpu.usage.usage_kernel / 1000,
            nr_periods: s.cpu.throttling.periods,
            nr_throttled: s.cpu.throttling.throttled_periods,
            throttled_usec: s.cpu.throttling.throttled_time / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(v2::MemoryStat {
            anon: raw("anon"),
            file: raw("file"),
            kernel_stack: raw("kernel_stack"),
            slab: raw("slab"),
            sock: raw("sock"),
            shmem: raw("shmem"),
            file_mapped: raw("file_mapped"),
            file_dirty: raw("file_dirty"),
            file_writeback: raw("file_writeback"),
            inactive_anon: raw("inactive_anon"),
            active_anon: raw("active_anon"),
            inactive_file: raw("inactive_file"),
            active_file: raw("active_file"),
            unevictable: raw("unevictable"),
            pgfault: raw("pgfault"),
            pgmajfault: raw("pgmajfault"),
            usage: s.memory.memory.usage,
            usage_limit: s.memory.memory.limit,
            swap_usage: s.memory.memswap.usage,
            swap_limit: s.memory.memswap.limit,
            max_usage: s.memory.memory.max_usage,
            ..Default::default()
        }),
        hugetlb: s
            .hugetlb
            .iter()
            .map(|(size, h)| v2::HugeTlbStat {
                current: h.usage,
                max: h.max_usage,
                failcnt: h.fail_count,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
