//! What godwit keeps about a restored container beyond libcontainer's state:
//!
//! - its *runtime bundle*, `<state dir>/godwit-bundle/config.json`: the spec
//!   it runs with, the rootfs as an absolute path and the time namespace
//!   listed, so that libcontainer's `exec` (which reads the bundle's
//!   config.json to know which namespaces to join) joins the init's time
//!   namespace too. It goes with the state directory.
//! - `godwit-restored.json`: the bundle `state` shows (the one given to
//!   `restore`), and a bundle `restore --import` recreated (overlay mounted
//!   at its rootfs), which `delete` unmounts and removes.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use crate::archive::RootfsBase;
use crate::error::{Result, RuntimeError};

/// File in the state directory of a restored container.
pub const RECORD: &str = "godwit-restored.json";
/// Directory in the state directory holding the runtime bundle.
pub const RUNTIME_BUNDLE: &str = "godwit-bundle";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The bundle `state` reports.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// A bundle recreated from an archive, removed with the container.
    #[serde(default)]
    pub recreated: Option<PathBuf>,
}

impl Record {
    /// The record in `state_dir`; empty for a container that was not restored.
    pub fn load(state_dir: &Path) -> Record {
        std::fs::read_to_string(state_dir.join(RECORD))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let path = state_dir.join(RECORD);
        let text = serde_json::to_vec(self).map_err(|e| RuntimeError::io(&path, e.into()))?;
        std::fs::write(&path, text).map_err(|e| RuntimeError::io(&path, e))
    }

    /// Unmounts and removes a recreated bundle (after the container is gone).
    pub fn cleanup(&self) {
        if let Some(dir) = &self.recreated {
            if let Err(e) = remove_recreated(dir) {
                tracing::error!(bundle = %dir.display(), "could not remove the recreated bundle: {e}");
            }
        }
    }
}

/// The bundle `state` shows for `container`.
pub fn shown_bundle(container: &libcontainer::container::Container) -> PathBuf {
    Record::load(&container.root)
        .bundle
        .unwrap_or_else(|| container.bundle().clone())
}

/// Writes the runtime bundle of a restored container into `state_dir`;
/// `spec` names its rootfs by absolute path. Returns the bundle directory.
pub fn write_runtime_bundle(state_dir: &Path, spec: &Spec) -> Result<PathBuf> {
    let dir = state_dir.join(RUNTIME_BUNDLE);
    std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io(&dir, e))?;
    let mut spec = spec.clone();
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Time)
    {
        namespaces.push(crate::timens::namespace_entry()?);
    }
    linux.set_namespaces(Some(namespaces));
    // Offsets are set when a namespace is made; a tenant joins the init's.
    linux.set_time_offsets(None);
    spec.set_linux(Some(linux));
    let config = dir.join("config.json");
    let text = serde_json::to_vec(&spec).map_err(|e| RuntimeError::io(&config, e.into()))?;
    std::fs::write(&config, text).map_err(|e| RuntimeError::io(&config, e))?;
    Ok(dir)
}

/// A bundle recreated from an archive: `config.json` (the checkpointed spec),
/// `rootfs` (an overlay: the recorded base below, `upper` with the diff and
/// the deletions as whiteouts above), `upper`, `work`. Removed on drop
/// unless kept.
pub struct RecreatedBundle {
    dir: PathBuf,
    keep: bool,
}

impl RecreatedBundle {
    pub fn create(
        dir: &Path,
        base: &RootfsBase,
        spec: &Spec,
        diff: Option<&Path>,
        deleted: &[String],
    ) -> Result<Self> {
        let lowers = base.lowerdirs();
        // Checked before anything is made.
        for lower in &lowers {
            crate::overlay::check_option_path(lower).map_err(|r| RuntimeError::Bundle {
                path: lower.clone(),
                reason: format!("the archive's rootfs base cannot be used: {r}; give --bundle DIR with a copy of the container's bundle"),
            })?;
            if !lower.is_dir() {
                return Err(RuntimeError::Bundle {
                    path: lower.clone(),
                    reason: "the rootfs base the archive records (the container's image on the source host) \
                             is not on this host at that path; give --bundle DIR with a copy of the container's bundle, \
                             or make the image available at that path"
                        .into(),
                });
            }
        }
        if dir.exists() {
            return Err(RuntimeError::Bundle {
                path: dir.to_path_buf(),
                reason: "exists already (left by another restore?); remove it or choose another id"
                    .into(),
            });
        }
        let made = RecreatedBundle {
            dir: dir.to_path_buf(),
            keep: false,
        };
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [dir, &upper, &work, &rootfs] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(d)
                .map_err(|e| RuntimeError::io(d, e))?;
        }
        if let Some(diff) = diff {
            crate::rootfs_diff::apply(diff, &upper)?;
        }
        crate::rootfs_diff::write_whiteouts(&upper, deleted)?;
        crate::overlay::mount(&lowers, &upper, &work, &rootfs)?;
        let mut spec = spec.clone();
        let mut root = spec.root().clone().unwrap_or_default();
        root.set_path(PathBuf::from("rootfs"));
        spec.set_root(Some(root));
        let config = dir.join("config.json");
        let text =
            serde_json::to_vec_pretty(&spec).map_err(|e| RuntimeError::io(&config, e.into()))?;
        std::fs::write(&config, text).map_err(|e| RuntimeError::io(&config, e))?;
        Ok(made)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The container now owns the bundle (its `delete` removes it).
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        self.dir.clone()
    }
}

impl Drop for RecreatedBundle {
    fn drop(&mut self) {
        if !self.keep {
            let _ = remove_recreated(&self.dir);
        }
    }
}

fn remove_recreated(dir: &Path) -> Result<()> {
    crate::overlay::unmount(&dir.join("rootfs"))?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io(dir, e)),
    }
}
