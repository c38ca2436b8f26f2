//! The task's root filesystem: containerd sends the snapshot's mounts with
//! Create and the shim mounts them at `<bundle>/rootfs` (as runc's shim does).

use std::path::Path;

use containerd_shim::protos::types::mount::Mount;
use nix::mount::{umount2, MntFlags};

use crate::error::{Result, ShimError};

/// Mounts `mounts` on `<bundle>/rootfs`; returns whether anything was mounted.
pub fn mount(bundle: &Path, mounts: &[Mount]) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| ShimError::io(&target, e))?;
    for (i, m) in mounts.iter().enumerate() {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target) {
            if i > 0 {
                unmount(bundle);
            }
            return Err(ShimError::Shim {
                what: format!("mount {} ({}) on {}", m.source, m.type_, target.display()),
                source: e,
            });
        }
    }
    Ok(true)
}

/// Unmounts everything stacked on `<bundle>/rootfs`.
pub fn unmount(bundle: &Path) {
    let target = bundle.join("rootfs");
    // Several mounts may be stacked; EINVAL means none is left.
    for _ in 0..16 {
        if let Err(e) = umount2(&target, MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL && e != nix::errno::Errno::ENOENT {
                log::warn!("unmount {}: {e}", target.display());
            }
            return;
        }
    }
}
