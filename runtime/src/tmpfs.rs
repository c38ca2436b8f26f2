//! Contents of the container's own tmpfs mounts (the scratch space a spec
//! gives a workload, e.g. /tmp or /scratch), which die with the container's
//! mount namespace and so must travel in the image.
//!
//! Both sides work inside the container's mount namespace — a forked child of
//! godwit joins it with setns — so paths resolve as the workload sees them
//! and nothing can be written outside it. At checkpoint the contents are read
//! while the container is frozen; at restore they are written into the
//! stub's fresh tmpfs before the processes (which may hold files there open)
//! are rebuilt.

use std::io::{Read, Write};
use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

/// File in the image holding the tmpfs contents (entry paths are the mount
/// destinations without their leading slash).
pub const TMPFS_DUMP: &str = "tmpfs.tar";

/// The spec's tmpfs mounts that hold workload data (not /dev, /sys and the
/// like, which the runtime recreates).
pub fn scratch_mounts(spec: &Spec) -> Vec<PathBuf> {
    spec.mounts()
        .as_ref()
        .map(|mounts| {
            mounts
                .iter()
                .filter(|m| m.typ().as_deref() == Some("tmpfs"))
                .map(|m| m.destination().clone())
                .filter(|d| {
                    !d.starts_with("/dev") && !d.starts_with("/sys") && !d.starts_with("/proc")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `work` in a forked child that joined `pid`'s mount namespace; returns
/// the bytes it produced.
fn in_mount_ns(
    pid: i32,
    what: &str,
    work: impl FnOnce() -> std::io::Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = std::fs::File::open(&ns_path).map_err(|e| RuntimeError::io(&ns_path, e))?;
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| RuntimeError::sys("pipe", e))?;
    // SAFETY: godwit is single-threaded here; the child only does file I/O
    // and leaves with _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| RuntimeError::sys("fork", e))? {
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            let mut out = std::fs::File::from(write_end);
            let result = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(std::io::Error::from)
                .and_then(|_| std::env::set_current_dir("/"))
                .and_then(|_| work());
            let code = match result {
                Ok(bytes) => {
                    if out.write_all(&bytes).is_ok() {
                        0
                    } else {
                        1
                    }
                }
                Err(e) => {
                    let _ = out.write_all(format!("error: {e}").as_bytes());
                    2
                }
            };
            // SAFETY: leaving the forked child without running destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(write_end);
            let mut bytes = Vec::new();
            let mut input = std::fs::File::from(read_end);
            let read = input.read_to_end(&mut bytes);
            let status = nix::sys::wait::waitpid(child, None)
                .map_err(|e| RuntimeError::sys(format!("wait for {what} helper"), e))?;
            read.map_err(|e| RuntimeError::io(&ns_path, e))?;
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(bytes),
                _ => Err(RuntimeError::Unsupported {
                    flag: "tmpfs",
                    reason: format!(
                        "{what} in the mount namespace of pid {pid} failed: {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                }),
            }
        }
    }
}

/// A tar of the tmpfs mounts `dests` as the process `pid` sees them.
pub fn capture(pid: i32, dests: &[PathBuf]) -> Result<Vec<u8>> {
    let dests = dests.to_vec();
    in_mount_ns(pid, "reading tmpfs contents", move || {
        let mut tar = tar::Builder::new(Vec::new());
        tar.follow_symlinks(false);
        for dest in &dests {
            let rel = dest.strip_prefix("/").unwrap_or(dest);
            if dest.is_dir() {
                tar.append_dir_all(rel, dest)?;
            }
        }
        tar.into_inner()
    })
}

/// Where a tmpfs.tar entry (or a hard link's target) `path` may go: a
/// relative path without `.`/`..`, strictly below one of the `mounts`
/// (destinations of the spec's tmpfs mounts). The mount it falls in, or why not.
pub fn entry_mount<'m>(
    path: &std::path::Path,
    mounts: &'m [PathBuf],
) -> std::result::Result<&'m PathBuf, String> {
    use std::path::Component;
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::CurDir => {}
            Component::RootDir => return Err("it is an absolute path".into()),
            _ => return Err("it has a `..` component".into()),
        }
    }
    mounts
        .iter()
        .filter(|m| {
            let m: Vec<_> = m
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect();
            parts.len() >= m.len() && parts[..m.len()] == m[..]
        })
        .max_by_key(|m| m.components().count())
        .ok_or_else(|| {
            format!(
                "it is not inside one of the spec's tmpfs mounts ({})",
                mounts
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Writes a [`capture`]d tar into the tmpfs mounts `mounts` (the spec's, see
/// [`scratch_mounts`]) of the stub `pid`. Every entry must lie inside one of
/// them, also after the symlinks already there are followed: an entry aimed
/// elsewhere (the rootfs, which is the bundle's on the host) is refused and
/// nothing more is written.
pub fn restore(pid: i32, tar_bytes: Vec<u8>, mounts: &[PathBuf]) -> Result<()> {
    let mounts = mounts.to_vec();
    in_mount_ns(pid, "writing tmpfs contents", move || {
        let refuse = |name: &std::path::Path, why: String| {
            std::io::Error::other(format!(
                "tmpfs.tar entry {:?} refused: {why}; the image was altered",
                name
            ))
        };
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let mount = entry_mount(&path, &mounts).map_err(|why| refuse(&path, why))?;
            use tar::EntryType as T;
            match entry.header().entry_type() {
                T::Regular | T::Directory | T::Symlink | T::Fifo | T::GNUSparse => {}
                T::Link => {
                    let target = entry
                        .link_name()?
                        .map(|l| l.into_owned())
                        .unwrap_or_default();
                    entry_mount(&target, &mounts)
                        .map_err(|why| refuse(&path, format!("its hard link target: {why}")))?;
                }
                other => {
                    return Err(refuse(
                        &path,
                        format!(
                            "entry type {:?} is never in tmpfs.tar",
                            other.as_byte() as char
                        ),
                    ))
                }
            }
            // The directory it lands in, symlinks followed, is still below the
            // mount (a symlink the tar made earlier could point elsewhere).
            let abs_mount = std::path::Path::new("/").join(mount);
            let real_mount = std::fs::canonicalize(&abs_mount)?;
            let below = path.components().count() > mount.components().count() - 1;
            let parent = std::path::Path::new("/").join(&path);
            let parent = parent.parent().filter(|_| below);
            if let Some(parent) = parent {
                if let Ok(real) = std::fs::canonicalize(parent) {
                    if !real.starts_with(&real_mount) {
                        return Err(refuse(
                            &path,
                            format!(
                                "its directory resolves to {}, outside the tmpfs mount {}",
                                real.display(),
                                abs_mount.display()
                            ),
                        ));
                    }
                }
            }
            if !entry.unpack_in("/")? {
                return Err(refuse(&path, "it points outside the container".into()));
            }
        }
        Ok(Vec::new())
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn entries_go_only_into_the_tmpfs_mounts() {
        let mounts = vec![PathBuf::from("/scratch"), PathBuf::from("/var/tmp")];
        assert!(entry_mount(Path::new("scratch/a"), &mounts).is_ok());
        assert!(entry_mount(Path::new("scratch"), &mounts).is_ok());
        assert!(entry_mount(Path::new("var/tmp/x/y"), &mounts).is_ok());
        for bad in [
            "bin/sh",
            "scratchy/a",
            "var/x",
            "/scratch/a",
            "scratch/../bin/sh",
            "",
        ] {
            assert!(entry_mount(Path::new(bad), &mounts).is_err(), "{bad}");
        }
        assert!(entry_mount(Path::new("scratch/a"), &[]).is_err());
    }
}
