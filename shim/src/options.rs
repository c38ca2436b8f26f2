//! Runtime options containerd passes with Create (runc's `Options` message,
//! which godwit reuses). containerd sends type names without a '/', which
//! protobuf's `Any::unpack` refuses, so the value bytes are decoded directly.

use std::path::PathBuf;

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShimError};

/// Default parent of the per-namespace state roots (as runc's /run/containerd/runc).
pub const DEFAULT_ROOT: &str = "/run/containerd/godwit";

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
    pub fn decode(any: Option<&Any>, namespace: &str) -> Result<TaskOptions> {
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
            PathBuf::from(DEFAULT_ROOT)
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
