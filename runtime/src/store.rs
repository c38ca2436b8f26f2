//! The state root (`--root`): one directory per container id, as libcontainer
//! keeps it. Loading here turns "no such directory" into an error naming the id.

use std::path::{Path, PathBuf};

use libcgroups::common::{AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;

use crate::error::{Result, RuntimeError};

#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

impl StateRoot {
    /// Opens (and creates, 0700) the state root.
    pub fn open(root: &Path) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| RuntimeError::state_root(root, root, e))?;
        let root =
            std::fs::canonicalize(root).map_err(|e| RuntimeError::state_root(root, root, e))?;
        Ok(StateRoot { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn exists(&self, id: &str) -> bool {
        validate_id(id).is_ok() && self.container_dir(id).join("state.json").exists()
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.container_dir(id);
        let state = dir.join("state.json");
        // A root the caller may not read is not an empty one (runc: "permission denied").
        let exists = state
            .try_exists()
            .map_err(|e| RuntimeError::state_root(&self.root, &state, e))?;
        if !exists {
            return Err(RuntimeError::NotFound {
                id: id.to_string(),
                root: self.root.clone(),
            });
        }
        let mut container =
            Container::load(dir).map_err(|e| RuntimeError::lc("load state of", id, e))?;
        // A container whose process died since the last command reads as stopped.
        container
            .refresh_status()
            .map_err(|e| RuntimeError::lc("refresh status of", id, e))?;
        Ok(container)
    }

    /// Ids of every container in the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| RuntimeError::state_root(&self.root, &self.root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RuntimeError::io(&self.root, e))?;
            if entry.path().join("state.json").exists() {
                if let Some(name) = entry.file_name().to_str() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// runc's rule: ids are non-empty and made of [A-Za-z0-9_+.-], not "." or "..".
pub fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id == "." || id == ".." {
        Some("it names a directory")
    } else if id.starts_with('.') {
        Some("ids beginning with `.` are reserved for godwit's own work directories in the state root (.ID.import, .ID.restore, ...); choose an id that starts with a letter or digit")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        Some("only letters, digits and _ + - . are allowed")
    } else if id.len() > 1024 {
        Some("it is longer than 1024 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RuntimeError::InvalidId {
            id: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// File in a container's state directory holding the spec it was created
/// from (the bundle may change or vanish; checkpoint and `state` need it).
pub const RECORDED_SPEC: &str = "godwit-spec.json";

/// The spec recorded at create.
pub fn recorded_spec(container: &Container) -> Result<oci_spec::runtime::Spec> {
    let path = container.root.join(RECORDED_SPEC);
    let text = std::fs::read_to_string(&path).map_err(|e| RuntimeError::io(&path, e))?;
    crate::bundle::parse_json(&path, &text)
}

/// Records the spec a container runs with (see [`RECORDED_SPEC`]).
pub fn record_spec(container: &Container, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let path = container.root.join(RECORDED_SPEC);
    let text = serde_json::to_vec(spec).map_err(|e| RuntimeError::io(&path, e.into()))?;
    std::fs::write(&path, text).map_err(|e| RuntimeError::io(&path, e))
}

/// The cgroup manager of a container, as libcontainer created its cgroup.
pub fn cgroup_manager(container: &Container) -> Result<AnyCgroupManager> {
    let id = container.id();
    let spec = container
        .spec()
        .map_err(|e| RuntimeError::lc("read the config of", id, e))?;
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: spec.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_string(),
    })
    .map_err(|e| RuntimeError::cgroup(id, e))
}

/// For `exec --cgroup SUB`: the first of the container's cgroup directories
/// (those of its init, read from /proc/PID/cgroup, in the hierarchies where
/// it is in `container_cgroup`) that has no sub-cgroup SUB, or `None` when
/// every one has it. With `controller`, only that controller's hierarchy is
/// looked at (a controller the container is in no hierarchy of is missing too).
pub fn sub_cgroup_missing(
    init: i32,
    container_cgroup: &Path,
    sub: &str,
    controller: Option<&str>,
) -> Result<Option<PathBuf>> {
    let own = container_cgroup.to_string_lossy();
    let own = own.trim_matches('/');
    let path = format!("/proc/{init}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|e| RuntimeError::io(&path, e))?;
    let sub = sub.trim_start_matches('/');
    let mut matched = false;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(cgroup)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let mount = if controllers.is_empty() {
            // cgroup v2: the unified hierarchy (alone, or beside v1's).
            ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .map(PathBuf::from)
                .find(|m| m.join("cgroup.controllers").exists())
        } else {
            let name = controllers.trim_start_matches("name=");
            let dir = PathBuf::from("/sys/fs/cgroup").join(name);
            dir.is_dir().then_some(dir)
        };
        // CONTROLLER:PATH: only that controller's hierarchy.
        if let Some(wanted) = controller {
            if !controllers.split(',').any(|c| c == wanted) {
                continue;
            }
        }
        let Some(mount) = mount else { continue };
        if !cgroup.trim_matches('/').ends_with(own) {
            continue;
        }
        matched = true;
        let dir = mount.join(cgroup.trim_start_matches('/')).join(sub);
        if !dir.is_dir() {
            return Ok(Some(dir));
        }
    }
    match controller {
        Some(c) if !matched => Ok(Some(PathBuf::from("/sys/fs/cgroup").join(c))),
        _ => Ok(None),
    }
}
