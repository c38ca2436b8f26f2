//! Runtime options containerd passes with Create (runc's `Options` message,
//! which godwit reuses). containerd sends type names without a '/', which
//! protobuf's `Any::unpack` refuses, so the value bytes are decoded directly.

use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShimError};

/// Default parent of the per-namespace state roots (as runc's /run/containerd/runc).
pub const DEFAULT_ROOT: &str = "/run/containerd/godwit";

/// The parent of the per-namespace state roots when the options name none:
/// `godwit` beside containerd's own task directory — containerd gives the
/// shim `<state>/io.containerd.runtime.v2.task/<ns>/<id>` as the bundle, so
/// a containerd with `--state /run/containerd` gets [`DEFAULT_ROOT`] and
/// private containerds (their own `--state`) never share a root (a
/// container of the same id in one must not be touched by the other).
/// Any other bundle layout falls back to [`DEFAULT_ROOT`].
pub fn default_root(bundle: &Path) -> PathBuf {
    let task_dir = bundle.parent().and_then(Path::parent);
    match task_dir {
        Some(dir)
            if dir
                .file_name()
                .is_some_and(|n| n == "io.containerd.runtime.v2.task") =>
        {
            match dir.parent() {
                Some(state) => state.join("godwit"),
                None => PathBuf::from(DEFAULT_ROOT),
            }
        }
        _ => PathBuf::from(DEFAULT_ROOT),
    }
}

/// What the shim keeps from the options, recorded in the bundle so that
/// `containerd-shim-godwit-v2 delete` finds the container after a crash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOptions {
    /// The godwit state root (one per namespace).
    pub root: PathBuf,
    pub no_pivot: bool,
    pub systemd_cgroup: bool,
}

pub const RECORD_FILE: &str = "godwit-shim.json";

impl TaskOptions {
    /// `bundle`: the task's bundle as containerd passes it, from which the
    /// default state root is derived (see [`default_root`]).
    pub fn decode(any: Option<&Any>, namespace: &str, bundle: &Path) -> Result<TaskOptions> {
        let options = match any {
            Some(any) if !any.value.is_empty() => {
                if !any.type_url.ends_with("containerd.runc.v1.Options") {
                    return Err(ShimError::invalid(
                        "options",
                        format!(
                            "type {:?} is not supported; godwit takes containerd.runc.v1.Options",
                            any.type_url
                        ),
                    ));
                }
                Options::parse_from_bytes(&any.value)
                    .map_err(|e| ShimError::invalid("options", e.to_string()))?
            }
            _ => Options::default(),
        };
        if options.systemd_cgroup && !std::path::Path::new("/run/systemd/system").is_dir() {
            return Err(ShimError::invalid(
                "options.SystemdCgroup",
                "systemd is not running on this host; set it to false",
            ));
        }
        let parent = if options.root.is_empty() {
            default_root(bundle)
        } else {
            PathBuf::from(&options.root)
        };
        Ok(TaskOptions {
            root: parent.join(namespace),
            no_pivot: options.no_pivot_root,
            systemd_cgroup: options.systemd_cgroup,
        })
    }

    pub fn save(&self, bundle: &std::path::Path) -> Result<()> {
        let path = bundle.join(RECORD_FILE);
        let text = serde_json::to_vec(self).map_err(|e| ShimError::io(&path, e.into()))?;
        std::fs::write(&path, text).map_err(|e| ShimError::io(&path, e))
    }

    pub fn load(bundle: &std::path::Path) -> Result<TaskOptions> {
        let path = bundle.join(RECORD_FILE);
        let text = std::fs::read(&path).map_err(|e| ShimError::io(&path, e))?;
        serde_json::from_slice(&text)
            .map_err(|e| ShimError::invalid(path.display().to_string(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_root_follows_containerds_state_dir() {
        let root = |b: &str| default_root(Path::new(b));
        assert_eq!(
            root("/run/containerd/io.containerd.runtime.v2.task/default/c1"),
            PathBuf::from(DEFAULT_ROOT)
        );
        assert_eq!(
            root("/tmp/ctrd-a/state/io.containerd.runtime.v2.task/k8s.io/c1"),
            PathBuf::from("/tmp/ctrd-a/state/godwit")
        );
        assert_eq!(root("/srv/bundle"), PathBuf::from(DEFAULT_ROOT));
    }
}
