//! What restore accepts from a checkpoint it did not make itself: pure
//! decisions on specs, unit-tested here, applied by `verbs::restore`.
//!
//! - [`check_compatible`]: the destination's spec (the `--bundle`'s
//!   config.json) decides the container; the archive's spec is only compared
//!   with it, for what the restored processes depend on.
//! - [`Allowed`] and [`check_creds`]: no restored process gets more than the
//!   destination's spec gives its process: uids/gids, groups, capabilities,
//!   no_new_privs and seccomp filter.
//! - [`check_archive_spec`] and [`check_rootfs_base`]: for `restore --import`
//!   without `--bundle`, where the archive's spec is all there is, what it may
//!   ask for, and where its recorded rootfs base may be.

use std::collections::BTreeSet;

use godwit_checkpoint::records::{Creds, Rlimit};
use oci_spec::runtime::{Capability, LinuxIdMapping, LinuxNamespaceType, Spec};

/// The namespace types a spec asks for. The time namespace is left out:
/// restore always puts the container in a new one (see `crate::timens`).
fn namespace_types(spec: &Spec) -> BTreeSet<String> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|ns| {
            ns.iter()
                .filter(|n| n.typ() != LinuxNamespaceType::Time)
                .map(|n| n.typ().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A mount destination as the kernel sees it: no trailing or doubled `/`.
fn normal_destination(d: &std::path::Path) -> String {
    let parts: Vec<_> = d
        .to_string_lossy()
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .map(str::to_string)
        .collect();
    format!("/{}", parts.join("/"))
}

fn mount_destinations(spec: &Spec) -> BTreeSet<String> {
    spec.mounts()
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|m| normal_destination(m.destination()))
                .collect()
        })
        .unwrap_or_default()
}

/// The process user as (uid, gid, additional gids sorted).
fn user_of(spec: &Spec) -> (u32, u32, Vec<u32>) {
    let Some(p) = spec.process() else {
        return (0, 0, Vec::new());
    };
    let u = p.user();
    let mut extra = u.additional_gids().clone().unwrap_or_default();
    extra.sort_unstable();
    extra.dedup();
    (u.uid(), u.gid(), extra)
}

fn terminal_of(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

fn show<T: std::fmt::Debug>(set: &T) -> String {
    format!("{set:?}")
}

/// A difference between the checkpointed spec and the destination's that the
/// restored processes depend on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} differs: the checkpoint's spec has {archive}, the destination's config.json has {destination}")]
pub struct Incompatible {
    pub field: &'static str,
    pub archive: String,
    pub destination: String,
}

/// Whether the destination's spec `dest` can run the processes checkpointed
/// under `archive`: the same namespace types (time aside), the same mount
/// destinations (sources may differ: bind sources are per host), the same
/// process user (uid, gid, additional gids) and terminal. Everything else
/// comes from `dest` and is not compared.
pub fn check_compatible(archive: &Spec, dest: &Spec) -> Result<(), Incompatible> {
    let (a, d) = (namespace_types(archive), namespace_types(dest));
    if a != d {
        return Err(Incompatible {
            field: "linux.namespaces (types)",
            archive: show(&a),
            destination: show(&d),
        });
    }
    let (a, d) = (mount_destinations(archive), mount_destinations(dest));
    if a != d {
        let only_a: Vec<_> = a.difference(&d).collect();
        let only_d: Vec<_> = d.difference(&a).collect();
        return Err(Incompatible {
            field: "mounts (destinations)",
            archive: format!("{} (not in the destination: {})", a.len(), show(&only_a)),
            destination: format!("{} (not in the checkpoint: {})", d.len(), show(&only_d)),
        });
    }
    let (a, d) = (user_of(archive), user_of(dest));
    if a.0 != d.0 {
        return Err(Incompatible {
            field: "process.user.uid",
            archive: a.0.to_string(),
            destination: d.0.to_string(),
        });
    }
    if a.1 != d.1 {
        return Err(Incompatible {
            field: "process.user.gid",
            archive: a.1.to_string(),
            destination: d.1.to_string(),
        });
    }
    if a.2 != d.2 {
        return Err(Incompatible {
            field: "process.user.additionalGids",
            archive: show(&a.2),
            destination: show(&d.2),
        });
    }
    let (a, d) = (terminal_of(archive), terminal_of(dest));
    if a != d {
        return Err(Incompatible {
            field: "process.terminal",
            archive: a.to_string(),
            destination: d.to_string(),
        });
    }
    Ok(())
}

/// Which ids (host view, as the dumper records them) a restored process may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRule {
    /// Exactly this one.
    Exactly(u32),
    /// Any id in these host ranges (start, length): a root process in a
    /// user namespace.
    Within(Vec<(u32, u32)>),
    /// Any id: a root process without a user namespace.
    Any,
}

impl IdRule {
    fn allows(&self, id: u32) -> bool {
        match self {
            IdRule::Exactly(x) => *x == id,
            IdRule::Within(ranges) => ranges.iter().any(|&(start, len)| {
                id >= start && u64::from(id) < u64::from(start) + u64::from(len)
            }),
            IdRule::Any => true,
        }
    }
}

impl std::fmt::Display for IdRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdRule::Exactly(x) => write!(f, "{x}"),
            IdRule::Within(r) => write!(f, "within the user namespace's host ranges {r:?}"),
            IdRule::Any => write!(f, "any"),
        }
    }
}

/// What the destination's spec allows a restored process, in the terms the
/// dumper records (host-view ids, capability bit masks, BPF programs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub uids: IdRule,
    pub gids: IdRule,
    /// Supplementary groups (None: any, for a root process).
    pub groups: Option<Vec<u32>>,
    pub cap_bnd: u64,
    /// What the permitted and effective sets may hold.
    pub cap_prm: u64,
    pub cap_inh: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// The spec's seccomp filter compiled as `create` compiles it.
    pub seccomp: Option<Vec<u8>>,
    /// Hard limits the spec sets (resource number, name, limit), which a
    /// process without CAP_SYS_RESOURCE can only lower.
    pub rlimits: Vec<(u32, String, u64)>,
}

/// The resource number of an OCI rlimit name (`RLIMIT_NOFILE`).
fn rlimit_number(name: &str) -> Option<u32> {
    const NAMES: [&str; 16] = [
        "CPU",
        "FSIZE",
        "DATA",
        "STACK",
        "CORE",
        "RSS",
        "NPROC",
        "NOFILE",
        "MEMLOCK",
        "AS",
        "LOCKS",
        "SIGPENDING",
        "MSGQUEUE",
        "NICE",
        "RTPRIO",
        "RTTIME",
    ];
    let short = name.strip_prefix("RLIMIT_")?;
    NAMES.iter().position(|n| *n == short).map(|i| i as u32)
}

/// The host id of container id `id` under `maps` (None: not mapped).
fn to_host(id: u32, maps: &[LinuxIdMapping]) -> Option<u32> {
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id())?;
        (off < m.size())
            .then(|| m.host_id().checked_add(off))
            .flatten()
    })
}

fn cap_mask(set: Option<&std::collections::HashSet<Capability>>) -> u64 {
    set.into_iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
        .map(|c| 1u64 << c.index())
        .fold(0, |a, b| a | b)
}

const CAP_SETPCAP: u64 = 1 << 8;

impl Allowed {
    /// The bounds of `spec`'s process; `seccomp` is its filter compiled
    /// (see [`compile_seccomp`]).
    pub fn from_spec(spec: &Spec, seccomp: Option<Vec<u8>>) -> Allowed {
        let (uid, gid, extra) = user_of(spec);
        let linux = spec.linux().as_ref();
        // A user namespace the container makes (not one it joins by path):
        // its mappings turn the spec's ids into the host's the dumper saw.
        let userns = linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        let uid_maps = linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default();
        let gid_maps = linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default();
        let (uids, gids, groups) = if !userns || (uid_maps.is_empty() && gid_maps.is_empty()) {
            if uid == 0 {
                (IdRule::Any, IdRule::Any, None)
            } else {
                let mut g = extra.clone();
                g.push(gid);
                (IdRule::Exactly(uid), IdRule::Exactly(gid), Some(g))
            }
        } else if uid == 0 {
            let ranges = |m: &[LinuxIdMapping]| m.iter().map(|m| (m.host_id(), m.size())).collect();
            (
                IdRule::Within(ranges(&uid_maps)),
                IdRule::Within(ranges(&gid_maps)),
                None,
            )
        } else {
            // An unmapped id cannot be held at all: nothing is allowed.
            let none = IdRule::Within(Vec::new());
            let u = to_host(uid, &uid_maps).map_or(none.clone(), IdRule::Exactly);
            let g = to_host(gid, &gid_maps).map_or(none, IdRule::Exactly);
            let groups = extra
                .iter()
                .chain(std::iter::once(&gid))
                .filter_map(|&x| to_host(x, &gid_maps))
                .collect();
            (u, g, Some(groups))
        };
        let process = spec.process().as_ref();
        let caps = process.and_then(|p| p.capabilities().as_ref());
        let bnd = cap_mask(caps.and_then(|c| c.bounding().as_ref()));
        let mut prm = cap_mask(caps.and_then(|c| c.permitted().as_ref()));
        let no_new_privs = process.and_then(|p| p.no_new_privileges()).unwrap_or(false);
        // An execve gives a root process (and, without no_new_privs, a
        // file with capabilities) a permitted set up to the bounding set.
        if uid == 0 || !no_new_privs {
            prm |= bnd;
        }
        let mut inh = cap_mask(caps.and_then(|c| c.inheritable().as_ref())) | prm;
        if prm & CAP_SETPCAP != 0 {
            inh |= bnd;
        }
        let amb = cap_mask(caps.and_then(|c| c.ambient().as_ref())) | (prm & inh);
        const CAP_SYS_RESOURCE: u64 = 1 << 24;
        let rlimits = if prm & CAP_SYS_RESOURCE != 0 {
            Vec::new()
        } else {
            process
                .and_then(|p| p.rlimits().clone())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| {
                    let name = r.typ().to_string();
                    Some((rlimit_number(&name)?, name, r.hard()))
                })
                .collect()
        };
        Allowed {
            uids,
            gids,
            groups,
            cap_bnd: bnd,
            cap_prm: prm,
            cap_inh: inh,
            cap_amb: amb,
            no_new_privs,
            seccomp,
            rlimits,
        }
    }
}

/// The spec's seccomp filter as the BPF program `create` loads (None: the
/// spec has none).
pub fn compile_seccomp(spec: &Spec) -> Result<Option<Vec<u8>>, String> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    libcontainer::seccomp::compile_bpf(seccomp)
        .map(Some)
        .map_err(|e| format!("linux.seccomp cannot be compiled: {e}"))
}

/// A process record that asks for more than the destination's spec allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("process {pid} of the image: {field} is {found}, the destination's spec allows {allowed}")]
pub struct CredsRefused {
    pub pid: i32,
    pub field: &'static str,
    pub found: String,
    pub allowed: String,
}

fn caps_beyond(have: u64, allowed: u64) -> Option<String> {
    let extra = have & !allowed;
    (extra != 0).then(|| {
        let names: Vec<String> = (0..64)
            .filter(|b| extra & (1u64 << b) != 0)
            .map(|b| {
                caps::all()
                    .into_iter()
                    .find(|c| c.index() == b)
                    .map_or(format!("cap {b}"), |c| c.to_string())
            })
            .collect();
        names.join(",")
    })
}

/// Checks the credentials of process `pid` of an image (`creds`, its
/// rlimits, and the BPF programs of its seccomp filters, oldest first)
/// against `allowed`.
pub fn check_creds(
    pid: i32,
    creds: &Creds,
    rlimits: &[Rlimit],
    filters: &[Vec<u8>],
    allowed: &Allowed,
) -> Result<(), CredsRefused> {
    let refuse = |field, found: String, allowed: String| CredsRefused {
        pid,
        field,
        found,
        allowed,
    };
    const ID_NAMES: [&str; 4] = ["real", "effective", "saved", "filesystem"];
    for (i, &u) in creds.uids.iter().enumerate() {
        if !allowed.uids.allows(u) {
            return Err(refuse(
                "uid",
                format!("{u} ({})", ID_NAMES.get(i).unwrap_or(&"extra")),
                allowed.uids.to_string(),
            ));
        }
    }
    for (i, &g) in creds.gids.iter().enumerate() {
        if !allowed.gids.allows(g) {
            return Err(refuse(
                "gid",
                format!("{g} ({})", ID_NAMES.get(i).unwrap_or(&"extra")),
                allowed.gids.to_string(),
            ));
        }
    }
    if let Some(groups) = &allowed.groups {
        if let Some(g) = creds.groups.iter().find(|g| !groups.contains(g)) {
            return Err(refuse(
                "supplementary group",
                g.to_string(),
                format!("{groups:?} (process.user.gid and additionalGids)"),
            ));
        }
    }
    let sets = [
        ("bounding capabilities", creds.cap_bnd, allowed.cap_bnd),
        ("permitted capabilities", creds.cap_prm, allowed.cap_prm),
        ("effective capabilities", creds.cap_eff, allowed.cap_prm),
        ("inheritable capabilities", creds.cap_inh, allowed.cap_inh),
        ("ambient capabilities", creds.cap_amb, allowed.cap_amb),
    ];
    for (field, have, may) in sets {
        if let Some(extra) = caps_beyond(have, may) {
            return Err(refuse(
                field,
                format!("{have:#x} (beyond the spec: {extra})"),
                format!("{may:#x}"),
            ));
        }
    }
    if allowed.no_new_privs && !creds.no_new_privs {
        return Err(refuse(
            "no_new_privs",
            "not set".into(),
            "only processes with it set (process.noNewPrivileges is true)".into(),
        ));
    }
    for r in rlimits {
        if let Some((_, name, hard)) = allowed.rlimits.iter().find(|a| a.0 == r.resource) {
            if r.max > *hard {
                return Err(refuse(
                    "rlimit hard limit",
                    format!("{name} = {}", r.max),
                    format!("{hard} (process.rlimits; raising it needs CAP_SYS_RESOURCE)"),
                ));
            }
        }
    }
    if let Some(prog) = &allowed.seccomp {
        if !filters.iter().any(|f| f == prog) {
            return Err(refuse(
                "seccomp filters",
                format!(
                    "{} filter(s), none of them the spec's ({} bytes of BPF)",
                    filters.len(),
                    prog.len()
                ),
                "the spec's linux.seccomp among them (a process may add filters, never drop it)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Filesystem types the kernel makes from nothing (their source is a name).
const KERNEL_FS: [&str; 8] = [
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm",
];

/// Namespaces a default runc (and `godwit spec`) spec has; an archive's spec
/// must make each one new.
const REQUIRED_NAMESPACES: [LinuxNamespaceType; 5] = [
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
];

/// Devices every container gets (libcontainer makes them): (type, major, minor, path).
const DEFAULT_DEVICES: [(&str, i64, i64, &str); 6] = [
    ("c", 1, 3, "/dev/null"),
    ("c", 1, 5, "/dev/zero"),
    ("c", 1, 7, "/dev/full"),
    ("c", 1, 8, "/dev/random"),
    ("c", 1, 9, "/dev/urandom"),
    ("c", 5, 0, "/dev/tty"),
];

/// The capabilities a container engine gives by default (Docker's and
/// podman's set; runc's default is smaller): an archive's spec may ask for
/// no other.
const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// /proc and /sys paths a default spec masks or makes read-only; an
/// archive's spec may add to them, not remove any.
const DEFAULT_MASKED: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
const DEFAULT_READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Sysctls that are per namespace (runc's list): any other would be written
/// for the whole host.
fn namespaced_sysctl(name: &str) -> bool {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    IPC.contains(&name)
        || name.starts_with("fs.mqueue.")
        || name.starts_with("net.")
        || name == "kernel.hostname"
        || name == "kernel.domainname"
}

/// Something the archive's spec asks for that a restore without `--bundle`
/// refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the archive's spec {field}: {what}")]
pub struct SpecRefused {
    pub field: String,
    pub what: String,
}

fn refused(field: impl Into<String>, what: impl Into<String>) -> SpecRefused {
    SpecRefused {
        field: field.into(),
        what: what.into(),
    }
}

/// `path` lexically at or under `dir` (both absolute, no `..`).
fn lexically_under(path: &std::path::Path, dir: &std::path::Path) -> bool {
    use std::path::Component;
    let plain = |p: &std::path::Path| {
        p.is_absolute()
            && p.components().all(|c| {
                matches!(
                    c,
                    Component::RootDir | Component::Normal(_) | Component::CurDir
                )
            })
    };
    plain(path) && plain(dir) && path.starts_with(dir)
}

/// Whether mount `m` is a bind mount (whatever its type says).
fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
}

/// What `restore --import` without `--bundle` accepts of the archive's spec
/// (beyond what `create` itself checks): every mount a kernel filesystem or a
/// bind of a path inside `bases` (the recorded rootfs base's directories,
/// canonical); new pid, ipc, uts, mount and network namespaces (none joined
/// by path); no devices beyond the default ones, no device cgroup rule
/// allowing more; no hooks; no capability beyond the engines' default set;
/// the default masked and read-only paths kept; only namespaced sysctls.
pub fn check_archive_spec(spec: &Spec, bases: &[std::path::PathBuf]) -> Result<(), SpecRefused> {
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart().as_ref().map_or(0, Vec::len),
            h.create_runtime().as_ref().map_or(0, Vec::len),
            h.create_container().as_ref().map_or(0, Vec::len),
            h.start_container().as_ref().map_or(0, Vec::len),
            h.poststart().as_ref().map_or(0, Vec::len),
            h.poststop().as_ref().map_or(0, Vec::len),
        ]
        .iter()
        .sum::<usize>();
        if any > 0 {
            return Err(refused(
                "hooks",
                format!("{any} hook(s): hooks run on the host; none are taken from an archive"),
            ));
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination().display();
        let typ = m.typ().as_deref().unwrap_or("");
        if !is_bind(m) && KERNEL_FS.contains(&typ) {
            continue;
        }
        if !is_bind(m) {
            return Err(refused(
                format!("mounts[{i}] ({dest})"),
                format!("type {typ:?}: only kernel filesystems ({}) and binds inside the rootfs base are taken", KERNEL_FS.join(", ")),
            ));
        }
        let source = m.source().as_deref().unwrap_or(std::path::Path::new(""));
        if !bases.iter().any(|b| lexically_under(source, b)) {
            return Err(refused(
                format!("mounts[{i}] ({dest})"),
                format!(
                    "binds host path {} (outside the recorded rootfs base {bases:?})",
                    source.display()
                ),
            ));
        }
        // The base is the image store, shared with other containers.
        let ro = m
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "ro"));
        if !ro {
            return Err(refused(
                format!("mounts[{i}] ({dest})"),
                format!(
                    "binds {} from the rootfs base writable: a bind from the image store must be `ro`",
                    source.display()
                ),
            ));
        }
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for want in REQUIRED_NAMESPACES {
        match namespaces.iter().find(|n| n.typ() == want) {
            None => {
                return Err(refused(
                    "linux.namespaces",
                    format!(
                    "has no {want} namespace (a default spec has pid, ipc, uts, mount and network)"
                ),
                ))
            }
            Some(n) if n.path().is_some() => {
                return Err(refused(
                    "linux.namespaces",
                    format!(
                        "joins the {want} namespace at {} instead of making one",
                        n.path()
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string())
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(n) = namespaces.iter().find(|n| n.path().is_some()) {
        return Err(refused(
            "linux.namespaces",
            format!("joins an existing {} namespace by path", n.typ()),
        ));
    }
    for d in linux.devices().iter().flatten() {
        let typ = d.typ().as_str().to_string();
        let known = DEFAULT_DEVICES.iter().any(|&(t, ma, mi, p)| {
            typ == t && d.major() == ma && d.minor() == mi && d.path() == std::path::Path::new(p)
        });
        if !known {
            return Err(refused(
                "linux.devices",
                format!(
                    "adds {} ({typ} {}:{}); only the default devices are taken",
                    d.path().display(),
                    d.major(),
                    d.minor()
                ),
            ));
        }
    }
    let rules = linux.resources().as_ref().and_then(|r| r.devices().clone());
    for r in rules.iter().flatten().filter(|r| r.allow()) {
        let known = DEFAULT_DEVICES.iter().any(|&(t, ma, mi, _)| {
            r.typ().as_ref().map(|x| x.as_str()) == Some(t)
                && r.major() == Some(ma)
                && r.minor() == Some(mi)
        });
        if !known {
            return Err(refused(
                "linux.resources.devices",
                format!(
                    "allows {} {:?}:{:?} ({}); only the default devices may be allowed",
                    r.typ().as_ref().map_or("a", |t| t.as_str()),
                    r.major(),
                    r.minor(),
                    r.access().clone().unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(caps) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    {
        let sets = [
            ("bounding", caps.bounding()),
            ("effective", caps.effective()),
            ("permitted", caps.permitted()),
            ("inheritable", caps.inheritable()),
            ("ambient", caps.ambient()),
        ];
        for (name, set) in sets {
            let mut extra: Vec<String> = set
                .iter()
                .flatten()
                .map(|c| c.to_string())
                .filter(|c| !DEFAULT_CAPS.contains(&c.as_str()))
                .collect();
            extra.sort();
            if !extra.is_empty() {
                return Err(refused(
                    format!("process.capabilities.{name}"),
                    format!("has CAP_{} beyond the default set", extra.join(", CAP_")),
                ));
            }
        }
    }
    let masked = linux.masked_paths().clone().unwrap_or_default();
    if let Some(p) = DEFAULT_MASKED
        .iter()
        .find(|p| !masked.iter().any(|m| m == *p))
    {
        return Err(refused("linux.maskedPaths", format!("does not mask {p}")));
    }
    let readonly = linux.readonly_paths().clone().unwrap_or_default();
    if let Some(p) = DEFAULT_READONLY
        .iter()
        .find(|p| !readonly.iter().any(|m| m == *p))
    {
        return Err(refused(
            "linux.readonlyPaths",
            format!("does not make {p} read-only"),
        ));
    }
    if let Some(path) = linux.cgroups_path() {
        let text = path.to_string_lossy();
        let parts: Vec<&str> = text.split(['/', ':']).filter(|p| !p.is_empty()).collect();
        if parts.is_empty() || parts.contains(&"..") {
            return Err(refused(
                "linux.cgroupsPath",
                format!("{text:?} is the root cgroup or leaves its parent (`..`)"),
            ));
        }
    }
    let mut sysctls: Vec<_> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_keys()
        .collect();
    sysctls.sort();
    if let Some(k) = sysctls.iter().find(|k| !namespaced_sysctl(k)) {
        return Err(refused(
            "linux.sysctl",
            format!("sets {k}, which is not per namespace (it would change the host)"),
        ));
    }
    Ok(())
}

/// Directories a rootfs base may never be at or under.
const NEVER_BASE: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Whether the canonical rootfs base directory `lower` may be used, given
/// the operator's allowed directories (`allowed`, canonical): at or under one
/// of them, never `/` or in /proc, /sys, /dev (nor may an allowed directory be).
pub fn check_rootfs_base(
    lower: &std::path::Path,
    allowed: &[std::path::PathBuf],
) -> Result<(), String> {
    let forbidden = |p: &std::path::Path| {
        p == std::path::Path::new("/") || NEVER_BASE.iter().any(|n| p.starts_with(n))
    };
    if forbidden(lower) {
        return Err(format!(
            "{} is the host's root or in /proc, /sys or /dev: never a rootfs base",
            lower.display()
        ));
    }
    if allowed.is_empty() {
        return Err(format!(
            "{} is not under a directory this host allows rootfs bases in (none is configured): \
             give --bundle DIR with a copy of the container's bundle, or allow the image store with \
             --rootfs-base-dir DIR (or GODWIT_ROOTFS_BASE_DIRS=DIR:DIR)",
            lower.display()
        ));
    }
    let usable: Vec<_> = allowed.iter().filter(|a| !forbidden(a)).collect();
    if usable.iter().any(|a| lower.starts_with(a)) {
        return Ok(());
    }
    Err(format!(
        "{} is not under a directory this host allows rootfs bases in ({}; `/`, /proc, /sys and /dev \
         never count): give --bundle DIR, or allow its directory with --rootfs-base-dir DIR",
        lower.display(),
        allowed
            .iter()
            .map(|a| a.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The allowed rootfs base directories: the `--rootfs-base-dir` flags and
/// the colon-separated `GODWIT_ROOTFS_BASE_DIRS` (empty parts ignored).
pub fn rootfs_base_dirs(
    flags: &[std::path::PathBuf],
    env: Option<&std::ffi::OsStr>,
) -> Vec<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut dirs = flags.to_vec();
    if let Some(env) = env {
        dirs.extend(
            env.as_bytes()
                .split(|&b| b == b':')
                .filter(|p| !p.is_empty())
                .map(|p| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p))),
        );
    }
    dirs
}

/// Environment variable listing allowed rootfs base directories.
pub const ROOTFS_BASE_DIRS_ENV: &str = "GODWIT_ROOTFS_BASE_DIRS";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Spec {
        serde_json::from_value(v).expect("a spec")
    }

    fn base() -> serde_json::Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 1000, "gid": 1000}, "terminal": false},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data/", "type": "bind", "source": "/srv/a/data", "options": ["rbind"]}
            ],
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
            ]}
        })
    }

    #[test]
    fn the_same_spec_is_compatible() {
        assert_eq!(check_compatible(&spec(base()), &spec(base())), Ok(()));
    }

    #[test]
    fn mount_sources_and_the_time_namespace_may_differ() {
        let mut d = base();
        d["mounts"][1]["source"] = json!("/srv/b/data");
        d["mounts"][1]["destination"] = json!("/data");
        d["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        d["linux"]["namespaces"][1] = json!({"type": "network", "path": "/var/run/netns/x"});
        assert_eq!(check_compatible(&spec(base()), &spec(d)), Ok(()));
    }

    #[test]
    fn a_missing_namespace_is_named_with_both_values() {
        let mut a = base();
        a["linux"]["namespaces"].as_array_mut().unwrap().remove(1);
        let e = check_compatible(&spec(a), &spec(base())).unwrap_err();
        assert_eq!(e.field, "linux.namespaces (types)");
        assert!(!e.archive.contains("\"net\""), "{e}");
        assert!(e.destination.contains("\"net\""), "{e}");
    }

    #[test]
    fn a_mount_destination_of_one_side_only_is_named() {
        let mut a = base();
        a["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "rw"]}));
        let e = check_compatible(&spec(a), &spec(base())).unwrap_err();
        assert_eq!(e.field, "mounts (destinations)");
        assert!(e.archive.contains("\"/host\""), "{e}");
    }

    #[test]
    fn the_user_and_terminal_must_match() {
        let mut a = base();
        a["process"]["user"]["uid"] = json!(0);
        let e = check_compatible(&spec(a), &spec(base())).unwrap_err();
        assert_eq!(
            (e.field, e.archive.as_str(), e.destination.as_str()),
            ("process.user.uid", "0", "1000")
        );
        let mut a = base();
        a["process"]["user"]["gid"] = json!(0);
        assert_eq!(
            check_compatible(&spec(a), &spec(base())).unwrap_err().field,
            "process.user.gid"
        );
        let mut a = base();
        a["process"]["user"]["additionalGids"] = json!([0]);
        assert_eq!(
            check_compatible(&spec(a), &spec(base())).unwrap_err().field,
            "process.user.additionalGids"
        );
        let mut a = base();
        a["process"]["terminal"] = json!(true);
        assert_eq!(
            check_compatible(&spec(a), &spec(base())).unwrap_err().field,
            "process.terminal"
        );
    }

    fn creds_spec() -> Spec {
        let mut v = base();
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        v["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
        });
        v["process"]["noNewPrivileges"] = json!(true);
        spec(v)
    }

    fn good_creds() -> Creds {
        let caps = (1 << 29) | (1 << 5) | (1 << 10);
        Creds {
            uids: vec![1000; 4],
            gids: vec![1000; 4],
            groups: vec![],
            cap_inh: 0,
            cap_prm: caps,
            cap_eff: caps,
            cap_bnd: caps,
            cap_amb: caps,
            no_new_privs: true,
        }
    }

    #[test]
    fn creds_within_the_spec_pass() {
        let allowed = Allowed::from_spec(&creds_spec(), None);
        assert_eq!(check_creds(7, &good_creds(), &[], &[], &allowed), Ok(()));
        // Fewer is always fine.
        let mut fewer = good_creds();
        fewer.cap_eff = 0;
        fewer.cap_amb = 0;
        assert_eq!(check_creds(7, &fewer, &[], &[], &allowed), Ok(()));
    }

    #[test]
    fn a_raised_uid_or_gid_or_group_is_refused_naming_the_pid() {
        let allowed = Allowed::from_spec(&creds_spec(), None);
        let mut c = good_creds();
        c.uids[1] = 0;
        let e = check_creds(7, &c, &[], &[], &allowed).unwrap_err();
        assert_eq!(
            (e.pid, e.field, e.found.as_str()),
            (7, "uid", "0 (effective)")
        );
        assert!(
            e.to_string()
                .starts_with("process 7 of the image: uid is 0"),
            "{e}"
        );
        let mut c = good_creds();
        c.gids[0] = 0;
        assert_eq!(
            check_creds(7, &c, &[], &[], &allowed).unwrap_err().field,
            "gid"
        );
        let mut c = good_creds();
        c.groups = vec![0];
        assert_eq!(
            check_creds(7, &c, &[], &[], &allowed).unwrap_err().field,
            "supplementary group"
        );
    }

    #[test]
    fn capabilities_beyond_the_spec_are_refused_by_set() {
        let allowed = Allowed::from_spec(&creds_spec(), None);
        let all = (1u64 << 41) - 1;
        let mut c = good_creds();
        c.cap_bnd = all;
        let e = check_creds(7, &c, &[], &[], &allowed).unwrap_err();
        assert_eq!(e.field, "bounding capabilities");
        assert!(e.found.contains("CAP_SYS_ADMIN"), "{e}");
        for (field, set) in [
            ("permitted capabilities", 0),
            ("effective capabilities", 1),
            ("inheritable capabilities", 2),
            ("ambient capabilities", 3),
        ] {
            let mut c = good_creds();
            match set {
                0 => c.cap_prm = all,
                1 => c.cap_eff = all,
                2 => c.cap_inh = all,
                _ => c.cap_amb = all,
            }
            assert_eq!(
                check_creds(7, &c, &[], &[], &allowed).unwrap_err().field,
                field
            );
        }
    }

    #[test]
    fn no_new_privs_must_be_kept_where_the_spec_sets_it() {
        let allowed = Allowed::from_spec(&creds_spec(), None);
        let mut c = good_creds();
        c.no_new_privs = false;
        assert_eq!(
            check_creds(7, &c, &[], &[], &allowed).unwrap_err().field,
            "no_new_privs"
        );
    }

    #[test]
    fn the_specs_seccomp_filter_must_be_among_the_images() {
        let allowed = Allowed::from_spec(&creds_spec(), Some(vec![1, 2, 3, 4]));
        let e = check_creds(7, &good_creds(), &[], &[], &allowed).unwrap_err();
        assert_eq!(e.field, "seccomp filters");
        assert!(check_creds(7, &good_creds(), &[], &[vec![9]], &allowed).is_err());
        assert_eq!(
            check_creds(
                7,
                &good_creds(),
                &[],
                &[vec![9], vec![1, 2, 3, 4]],
                &allowed
            ),
            Ok(())
        );
    }

    #[test]
    fn root_may_hold_any_id_within_its_user_namespace() {
        let mut v = base();
        v["process"]["user"] = json!({"uid": 0, "gid": 0});
        let allowed = Allowed::from_spec(&spec(v.clone()), None);
        let mut c = good_creds();
        c.uids = vec![5, 5, 5, 5];
        c.gids = vec![5, 5, 5, 5];
        c.groups = vec![12];
        c.no_new_privs = false;
        // The spec gives no capabilities at all.
        (c.cap_bnd, c.cap_prm, c.cap_eff, c.cap_amb) = (0, 0, 0, 0);
        assert_eq!(check_creds(1, &c, &[], &[], &allowed), Ok(()));
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        v["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let allowed = Allowed::from_spec(&spec(v.clone()), None);
        assert_eq!(
            check_creds(1, &c, &[], &[], &allowed).unwrap_err().field,
            "uid"
        );
        c.uids = vec![100005; 4];
        c.gids = vec![100005; 4];
        assert_eq!(check_creds(1, &c, &[], &[], &allowed), Ok(()));
        // A non-root user is its one mapped id.
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        let allowed = Allowed::from_spec(&spec(v), None);
        assert_eq!(allowed.uids, IdRule::Exactly(101000));
        assert_eq!(allowed.gids, IdRule::Exactly(101000));
    }

    fn default_json() -> serde_json::Value {
        let spec = crate::verbs::spec::default_spec(false).expect("default spec");
        serde_json::to_value(spec).unwrap()
    }

    fn policy(v: serde_json::Value) -> Result<(), SpecRefused> {
        check_archive_spec(&spec(v), &[std::path::PathBuf::from("/srv/images/a")])
    }

    #[test]
    fn a_default_spec_passes_the_archive_policy() {
        assert_eq!(policy(default_json()), Ok(()));
        // A bind inside the base, Docker's capabilities, a namespaced sysctl.
        let mut v = default_json();
        v["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": "/srv/images/a/data", "options": ["rbind", "ro"]
        }));
        v["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_SETUID", "CAP_KILL"]);
        v["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        assert_eq!(policy(v), Ok(()));
    }

    #[test]
    fn host_binds_and_foreign_filesystems_are_refused() {
        for (source, typ, options) in [
            ("/", "bind", json!(["rbind", "rw"])),
            ("/srv/images/a/../../../etc", "bind", json!(["rbind"])),
            ("/srv/images/ab", "none", json!(["bind", "ro"])),
            ("/srv/images/a/data", "bind", json!(["rbind", "rw"])),
            ("/etc", "proc", json!(["rbind"])),
            ("/dev/sda1", "ext4", json!([])),
        ] {
            let mut v = default_json();
            v["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/host", "type": typ, "source": source, "options": options
            }));
            let e = policy(v).unwrap_err();
            assert!(e.field.contains("(/host)"), "{source}: {e}");
        }
    }

    #[test]
    fn missing_or_joined_namespaces_are_refused() {
        for drop in ["pid", "ipc", "uts", "mount", "network"] {
            let mut v = default_json();
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != drop);
            let e = policy(v).unwrap_err();
            assert_eq!(e.field, "linux.namespaces", "{drop}");
        }
        let mut v = default_json();
        v["linux"]["namespaces"][1] = json!({"type": "network", "path": "/proc/1/ns/net"});
        assert!(policy(v).unwrap_err().what.contains("/proc/1/ns/net"));
        let mut v = default_json();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "cgroup", "path": "/proc/1/ns/cgroup"}));
        assert_eq!(policy(v).unwrap_err().field, "linux.namespaces");
    }

    #[test]
    fn devices_hooks_caps_masks_and_host_sysctls_are_refused() {
        type Edit = Box<dyn Fn(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "linux.devices",
                Box::new(|v| {
                    v["linux"]["devices"] =
                        json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]);
                }),
            ),
            (
                "linux.resources.devices",
                Box::new(|v| {
                    v["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
                }),
            ),
            (
                "hooks",
                Box::new(|v| {
                    v["hooks"] =
                        json!({"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "id"]}]});
                }),
            ),
            (
                "process.capabilities.bounding",
                Box::new(|v| {
                    v["process"]["capabilities"]["bounding"] = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
                }),
            ),
            (
                "process.capabilities.ambient",
                Box::new(|v| {
                    v["process"]["capabilities"]["ambient"] = json!(["CAP_DAC_READ_SEARCH"]);
                }),
            ),
            (
                "linux.maskedPaths",
                Box::new(|v| {
                    v["linux"]["maskedPaths"] = json!([]);
                }),
            ),
            (
                "linux.readonlyPaths",
                Box::new(|v| {
                    v["linux"]["readonlyPaths"] = json!(["/proc/bus"]);
                }),
            ),
            (
                "linux.cgroupsPath",
                Box::new(|v| {
                    v["linux"]["cgroupsPath"] = json!("/../../system.slice");
                }),
            ),
            (
                "linux.cgroupsPath",
                Box::new(|v| {
                    v["linux"]["cgroupsPath"] = json!("/");
                }),
            ),
            (
                "linux.sysctl",
                Box::new(|v| {
                    v["linux"]["sysctl"] = json!({"kernel.core_pattern": "|/tmp/x"});
                }),
            ),
        ];
        for (field, edit) in cases {
            let mut v = default_json();
            edit(&mut v);
            assert_eq!(policy(v).unwrap_err().field, field);
        }
        // The default devices are fine.
        let mut v = default_json();
        v["linux"]["devices"] = json!([{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]);
        assert_eq!(policy(v), Ok(()));
    }

    #[test]
    fn a_rootfs_base_must_be_in_an_allowed_directory() {
        use std::path::PathBuf;
        let allowed = [PathBuf::from("/var/lib/images")];
        let ok = |p: &str| check_rootfs_base(std::path::Path::new(p), &allowed);
        assert_eq!(ok("/var/lib/images/layer1"), Ok(()));
        assert!(ok("/var/lib/imagesX").is_err());
        assert!(ok("/etc").unwrap_err().contains("--rootfs-base-dir"));
        for never in ["/", "/proc/self/root", "/sys/fs", "/dev/shm"] {
            assert!(
                ok(never).unwrap_err().contains("never a rootfs base"),
                "{never}"
            );
        }
        // None configured: the error says how to give one.
        let e = check_rootfs_base(std::path::Path::new("/var/lib/images/l"), &[]).unwrap_err();
        assert!(
            e.contains("--bundle") && e.contains("GODWIT_ROOTFS_BASE_DIRS"),
            "{e}"
        );
        // `/` allowed counts for nothing.
        let e =
            check_rootfs_base(std::path::Path::new("/srv/x"), &[PathBuf::from("/")]).unwrap_err();
        assert!(e.contains("never count"), "{e}");
    }

    #[test]
    fn base_dirs_come_from_flags_and_the_environment() {
        use std::path::PathBuf;
        let dirs = rootfs_base_dirs(&[PathBuf::from("/a")], Some(std::ffi::OsStr::new("/b::/c")));
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/a"),
                PathBuf::from("/b"),
                PathBuf::from("/c")
            ]
        );
        assert!(rootfs_base_dirs(&[], None).is_empty());
    }

    #[test]
    fn a_hard_rlimit_above_the_specs_is_refused() {
        let mut v = serde_json::to_value(creds_spec()).unwrap();
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]);
        let allowed = Allowed::from_spec(&spec(v.clone()), None);
        let nofile = |max| Rlimit {
            resource: 7,
            cur: 1024,
            max,
        };
        assert_eq!(
            check_creds(7, &good_creds(), &[nofile(512)], &[], &allowed),
            Ok(())
        );
        let e = check_creds(7, &good_creds(), &[nofile(1 << 20)], &[], &allowed).unwrap_err();
        assert_eq!(
            (e.field, e.found.as_str()),
            ("rlimit hard limit", "RLIMIT_NOFILE = 1048576")
        );
        // With CAP_SYS_RESOURCE the process could have raised it itself.
        v["process"]["capabilities"]["permitted"] = json!(["CAP_SYS_RESOURCE"]);
        let allowed = Allowed::from_spec(&spec(v), None);
        assert!(allowed.rlimits.is_empty());
    }
}
