//! What restore accepts from a checkpoint it did not make itself: pure
//! decisions on specs, unit-tested here, applied by `verbs::restore`.
//!
//! - [`check_compatible`]: the destination's spec (the `--bundle`'s
//!   config.json) decides the container; the archive's spec is only compared
//!   with it, for what the restored processes depend on.

use std::collections::BTreeSet;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

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
}
