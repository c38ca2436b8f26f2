//! The rootfs changes a checkpoint carries, for a plain-directory rootfs.
//!
//! How "changed" is decided: every file, directory or symlink under the rootfs
//! whose inode change time (ctime) is at or after the container's creation
//! went into `rootfs-diff.tar`: the kernel updates ctime on every write,
//! chmod, chown, rename or link, so this catches whatever the container
//! created or modified, and nothing a container cannot have touched. At
//! restore the tar is unpacked over the rootfs of the bundle given to
//! `restore`, which is expected to be a copy of the same base. Deleted files
//! leave no inode to look at, so they are not detected this way (an overlay
//! rootfs, whose upper dir records whiteouts, is what can carry them).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Result, RuntimeError};

/// Writes the entries of `rootfs` changed at or after `since` into the tar
/// file `out`; returns how many entries it holds.
pub fn capture(rootfs: &Path, since: SystemTime, out: &Path) -> Result<usize> {
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let file = std::fs::File::create(out).map_err(|e| RuntimeError::io(out, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let root_dev = std::fs::symlink_metadata(rootfs)
        .map_err(|e| RuntimeError::io(rootfs, e))?
        .dev();
    let mut count = 0;
    let mut stack = vec![rootfs.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| RuntimeError::io(&dir, e))?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| RuntimeError::io(&path, e))?;
            // Never cross into something mounted below the rootfs.
            if meta.dev() != root_dev {
                continue;
            }
            let rel = path.strip_prefix(rootfs).unwrap_or(&path);
            let ctime = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
            let changed = ctime >= since;
            let kind = meta.file_type();
            if changed && (kind.is_file() || kind.is_dir() || kind.is_symlink()) {
                if kind.is_dir() {
                    tar.append_dir(rel, &path)
                        .map_err(|e| RuntimeError::io(&path, e))?;
                } else {
                    tar.append_path_with_name(&path, rel)
                        .map_err(|e| RuntimeError::io(&path, e))?;
                }
                count += 1;
            }
            if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(|e| RuntimeError::io(out, e))?;
    Ok(count)
}

/// Unpacks a diff captured by [`capture`] over `rootfs`. The tar crate's
/// `unpack_in` refuses entries that would land outside `rootfs` (`..`,
/// absolute paths, writes through symlinks leaving it).
pub fn apply(diff: &Path, rootfs: &Path) -> Result<usize> {
    let file = std::fs::File::open(diff).map_err(|e| RuntimeError::io(diff, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut count = 0;
    for entry in archive.entries().map_err(|e| RuntimeError::io(diff, e))? {
        let mut entry = entry.map_err(|e| RuntimeError::io(diff, e))?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let inside = entry
            .unpack_in(rootfs)
            .map_err(|e| RuntimeError::io(rootfs.join(&name), e))?;
        if !inside {
            return Err(RuntimeError::Bundle {
                path: diff.to_path_buf(),
                reason: format!(
                    "entry {name:?} would land outside the rootfs; the archive is refused"
                ),
            });
        }
        count += 1;
    }
    Ok(count)
}
