//! The rootfs changes a checkpoint carries: `rootfs-diff.tar` (what the
//! container created or changed) and `deleted.files` (what it deleted), written
//! into the image directory and moved to the archive's top level by export.
//!
//! An overlay rootfs (podman, containerd): the upper dir is the diff, without
//! its whiteouts; whiteouts (char devices 0/0) are deletions, and an opaque
//! dir (xattr trusted.overlay.opaque=y, a dir removed and made again) deletes
//! every name its lower dirs held that the upper does not hold again.
//!
//! A plain-directory rootfs: every file, directory or symlink under the rootfs
//! whose inode change time (ctime) is at or after the container's creation
//! went into `rootfs-diff.tar`: the kernel updates ctime on every write,
//! chmod, chown, rename or link, so this catches whatever the container
//! created or modified, and nothing a container cannot have touched. At
//! restore the tar is unpacked over the rootfs of the bundle given to
//! `restore`, which is expected to be a copy of the same base. Deleted files
//! leave no inode to look at, so they are not detected this way (an overlay
//! rootfs, whose upper dir records whiteouts, is what can carry them).

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::archive::{RootfsBase, DELETED_FILES, ROOTFS_DIFF};
use crate::error::{Result, RuntimeError};

/// How much earlier than the container's creation a ctime still counts as
/// a change (timestamp granularity).
const CTIME_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// What a checkpoint captured of the rootfs (files in the image directory).
#[derive(Clone, Debug)]
pub struct Captured {
    /// `<image>/rootfs-diff.tar`.
    pub diff: PathBuf,
    pub entries: usize,
    /// Paths (from the rootfs, with a leading `/`) the container deleted.
    pub deleted: Vec<String>,
    /// What the diff applies to, for a restore that recreates the bundle.
    pub base: RootfsBase,
}

/// Writes the changes of the container's `rootfs` (created at `since`) into
/// `image` as `rootfs-diff.tar` and `deleted.files` (0600).
pub fn capture_into_image(rootfs: &Path, since: SystemTime, image: &Path) -> Result<Captured> {
    let rootfs = std::fs::canonicalize(rootfs).map_err(|e| RuntimeError::io(rootfs, e))?;
    let diff = image.join(ROOTFS_DIFF);
    let (entries, deleted, base) = match crate::overlay::mounted_at(&rootfs)? {
        Some(overlay) => {
            let (entries, deleted) = capture_upper(&overlay, &diff)?;
            let base = RootfsBase::Overlay {
                lowerdirs: overlay.lowerdirs,
            };
            (entries, deleted, base)
        }
        None => {
            // Inode times come from the kernel's coarse clock (a tick behind
            // the creation time godwit read), and some filesystems keep
            // seconds only: a file made right at the start must not be missed.
            let since = since.checked_sub(CTIME_MARGIN).unwrap_or(since);
            let entries = capture(&rootfs, since, &diff)?;
            let base = RootfsBase::Directory {
                path: rootfs.clone(),
            };
            (entries, Vec::new(), base)
        }
    };
    let list = image.join(DELETED_FILES);
    let bytes = serde_json::to_vec(&deleted).map_err(|e| RuntimeError::io(&list, e.into()))?;
    private_file(&list)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .map_err(|e| RuntimeError::io(&list, e))?;
    write_manifest(image)?;
    Ok(Captured {
        diff,
        entries,
        deleted,
        base,
    })
}

/// File in an image directory with the SHA-256 of its rootfs-diff.tar and
/// deleted.files (written after the inventory, so not in it).
pub const MANIFEST: &str = "rootfs.sha256";

fn file_digest(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = godwit_checkpoint::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

fn write_manifest(image: &Path) -> Result<()> {
    let mut sums = std::collections::BTreeMap::new();
    for name in [ROOTFS_DIFF, DELETED_FILES] {
        let p = image.join(name);
        sums.insert(name, file_digest(&p).map_err(|e| RuntimeError::io(&p, e))?);
    }
    let path = image.join(MANIFEST);
    let bytes = serde_json::to_vec(&sums).map_err(|e| RuntimeError::io(&path, e.into()))?;
    private_file(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
        .map_err(|e| RuntimeError::io(&path, e))
}

/// An image directory's rootfs-diff.tar and deleted.files against their
/// manifest (an image written before the manifest: a warning).
pub fn verify_manifest(image: &Path) -> Result<()> {
    let path = image.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if image.join(ROOTFS_DIFF).exists() {
                tracing::warn!(image = %image.display(), "no {MANIFEST}: the rootfs diff cannot be checked (an image from an older godwit)");
            }
            return Ok(());
        }
        Err(e) => return Err(RuntimeError::io(&path, e)),
    };
    let sums: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&text).map_err(|e| RuntimeError::Bundle {
            path: path.clone(),
            reason: format!("not a digest list: {e}"),
        })?;
    for name in [ROOTFS_DIFF, DELETED_FILES] {
        let p = image.join(name);
        let want = sums.get(name).cloned().unwrap_or_default();
        let got = file_digest(&p).map_err(|e| RuntimeError::io(&p, e))?;
        if got != want {
            return Err(RuntimeError::Bundle {
                path: p,
                reason: format!(
                    "SHA-256 {got}, {MANIFEST} says {want:?}: the image is corrupt or was modified; nothing was applied"
                ),
            });
        }
    }
    Ok(())
}

/// The deletions recorded in an image directory (none if it has no list).
pub fn read_deleted(image: &Path) -> Result<Vec<String>> {
    let list = image.join(DELETED_FILES);
    match std::fs::read_to_string(&list) {
        Ok(text) => crate::bundle::parse_json(&list, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(RuntimeError::io(&list, e)),
    }
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let (Ok(path), Ok(name)) = (
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new("trusted.overlay.opaque"),
    ) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated; the buffer is ours and its length is passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// The upper dir of `overlay` into the tar `out`, whiteouts and opaque dirs
/// turned into deletions; returns (entries, deletions).
fn capture_upper(
    overlay: &crate::overlay::OverlayMount,
    out: &Path,
) -> Result<(usize, Vec<String>)> {
    let upper = &overlay.upperdir;
    let file = private_file(out).map_err(|e| RuntimeError::io(out, e))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let mut count = 0;
    let mut deleted = Vec::new();
    let mut stack = vec![upper.clone()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| RuntimeError::io(&dir, e))?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| RuntimeError::io(&path, e))?;
            let rel = path.strip_prefix(upper).unwrap_or(&path).to_path_buf();
            let kind = meta.file_type();
            if is_whiteout(&meta) {
                deleted.push(format!("/{}", rel.display()));
            } else if kind.is_dir() {
                tar.append_dir(&rel, &path)
                    .map_err(|e| RuntimeError::io(&path, e))?;
                count += 1;
                if is_opaque(&path) {
                    hidden_lower_names(&overlay.lowerdirs, &rel, &path, &mut deleted);
                }
                stack.push(path);
            } else if kind.is_fifo() {
                append_fifo(&mut tar, &rel, &meta).map_err(|e| RuntimeError::io(&path, e))?;
                count += 1;
            } else if kind.is_file() || kind.is_symlink() {
                tar.append_path_with_name(&path, &rel)
                    .map_err(|e| RuntimeError::io(&path, e))?;
                count += 1;
            } else {
                tracing::warn!(path = %path.display(), "not carried: only files, directories and symlinks travel");
            }
        }
    }
    tar.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(|e| RuntimeError::io(out, e))?;
    Ok((count, deleted))
}

/// Below the opaque upper dir `upper_dir` (rootfs path `rel`): every name the
/// lower dirs hold there that the upper does not hold again is a deletion; a
/// dir in both hides its lower contents too.
fn hidden_lower_names(lowers: &[PathBuf], rel: &Path, upper_dir: &Path, out: &mut Vec<String>) {
    let mut names = BTreeSet::new();
    let mut lower_dirs = BTreeSet::new();
    for lower in lowers {
        let Ok(entries) = std::fs::read_dir(lower.join(rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if is_whiteout(&meta) {
                continue;
            }
            if meta.is_dir() {
                lower_dirs.insert(e.file_name());
            }
            names.insert(e.file_name());
        }
    }
    for name in names {
        let up = upper_dir.join(&name);
        match std::fs::symlink_metadata(&up) {
            Err(_) => out.push(format!("/{}", rel.join(&name).display())),
            Ok(m) if m.is_dir() && lower_dirs.contains(&name) => {
                hidden_lower_names(lowers, &rel.join(&name), &up, out)
            }
            Ok(_) => {}
        }
    }
}

/// Writes the entries of `rootfs` changed at or after `since` into the tar
/// file `out`; returns how many entries it holds.
pub fn capture(rootfs: &Path, since: SystemTime, out: &Path) -> Result<usize> {
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let file = private_file(out).map_err(|e| RuntimeError::io(out, e))?;
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
            if changed && (kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_fifo()) {
                if kind.is_dir() {
                    tar.append_dir(rel, &path)
                        .map_err(|e| RuntimeError::io(&path, e))?;
                } else if kind.is_fifo() {
                    append_fifo(&mut tar, rel, &meta).map_err(|e| RuntimeError::io(&path, e))?;
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
    check_diff(diff)?;
    let file = std::fs::File::open(diff).map_err(|e| RuntimeError::io(diff, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    let mut count = 0;
    for entry in archive.entries().map_err(|e| RuntimeError::io(diff, e))? {
        let mut entry = entry.map_err(|e| RuntimeError::io(diff, e))?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if entry.header().entry_type() == tar::EntryType::Fifo {
            make_fifo(rootfs, &name, entry.header())?;
            count += 1;
            continue;
        }
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

/// Why a rootfs diff entry is refused, if it is: only what [`capture`]
/// writes — regular files, directories, symlinks and FIFOs at relative paths
/// without `..`, and hard links to such paths — never a device node, an
/// absolute path, or a hard link to a host path.
pub fn diff_entry_refusal(
    path: &Path,
    kind: tar::EntryType,
    link: Option<&Path>,
) -> Option<String> {
    use std::path::Component;
    let relative_inside = |p: &Path| {
        p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
            && p.components().any(|c| matches!(c, Component::Normal(_)))
    };
    if !relative_inside(path) {
        return Some("its path is absolute, empty or has a `..` component".into());
    }
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Directory | T::Symlink | T::Fifo | T::GNUSparse => None,
        T::Link => match link {
            Some(l) if relative_inside(l) => None,
            Some(l) => Some(format!(
                "it is a hard link to {}, which is not a path inside the rootfs",
                l.display()
            )),
            None => Some("it is a hard link without a target".into()),
        },
        T::Char | T::Block => Some("it is a device node".into()),
        other => Some(format!(
            "entry type {:?} is never in a diff",
            other.as_byte() as char
        )),
    }
}

/// Every entry of the diff against [`diff_entry_refusal`], before any is
/// unpacked.
fn check_diff(diff: &Path) -> Result<()> {
    let file = std::fs::File::open(diff).map_err(|e| RuntimeError::io(diff, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    // Symlinks the diff makes: nothing of it may be written through one.
    let mut symlinks: std::collections::HashSet<PathBuf> = Default::default();
    for entry in archive.entries().map_err(|e| RuntimeError::io(diff, e))? {
        let entry = entry.map_err(|e| RuntimeError::io(diff, e))?;
        let path = entry.path().map_err(|e| RuntimeError::io(diff, e))?;
        let link = entry.link_name().map_err(|e| RuntimeError::io(diff, e))?;
        let kind = entry.header().entry_type();
        let through = path
            .ancestors()
            .skip(1)
            .find(|a| symlinks.contains(*a))
            .map(|a| {
                format!(
                    "it is written through {}, a symlink the diff made",
                    a.display()
                )
            });
        if kind == tar::EntryType::Symlink {
            symlinks.insert(path.to_path_buf());
        }
        if let Some(why) = through.or_else(|| diff_entry_refusal(&path, kind, link.as_deref())) {
            return Err(RuntimeError::Bundle {
                path: diff.to_path_buf(),
                reason: format!(
                    "rootfs diff entry {:?} refused: {why}; godwit never writes such an entry, so the image was altered; nothing was applied",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// A FIFO as a tar entry named `rel`. Written by hand: tar 0.4's
/// `append_path_with_name` names special files by their source path.
fn append_fifo<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    rel: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_metadata(meta);
    header.set_entry_type(tar::EntryType::Fifo);
    header.set_size(0);
    tar.append_data(&mut header, rel, std::io::empty())
}

/// A FIFO entry of the diff, made below `rootfs` without leaving it (the tar
/// crate would unpack it as an empty regular file).
fn make_fifo(rootfs: &Path, name: &str, header: &tar::Header) -> Result<()> {
    let refused = |reason: String| RuntimeError::Bundle {
        path: rootfs.join(name),
        reason,
    };
    let (parent, leaf) = split_rel(name)
        .ok_or_else(|| refused("not a name for a FIFO; the archive is refused".into()))?;
    let root = open_dir(rootfs)?;
    let dir = open_in_root(&root, &parent).map_err(|e| {
        refused(format!(
            "its directory cannot be opened inside the rootfs: {e}"
        ))
    })?;
    match nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        leaf.as_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(refused(format!("the old entry cannot be replaced: {e}"))),
    }
    let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o600));
    nix::unistd::mkfifoat(Some(dir.as_raw_fd()), leaf.as_str(), mode)
        .map_err(|e| refused(format!("mkfifo: {e}")))?;
    // mkfifo applies the umask: set the recorded mode and owner exactly.
    nix::sys::stat::fchmodat(
        Some(dir.as_raw_fd()),
        leaf.as_str(),
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| refused(format!("chmod: {e}")))?;
    let uid = header
        .uid()
        .ok()
        .map(|u| nix::unistd::Uid::from_raw(u as u32));
    let gid = header
        .gid()
        .ok()
        .map(|g| nix::unistd::Gid::from_raw(g as u32));
    nix::unistd::fchownat(
        Some(dir.as_raw_fd()),
        leaf.as_str(),
        uid,
        gid,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| refused(format!("chown: {e}")))
}

/// `rel` (a deleted.files path) as a relative path and its last component.
fn split_rel(rel: &str) -> Option<(PathBuf, String)> {
    let p = Path::new(rel.trim_start_matches('/'));
    let leaf = p.file_name()?.to_str()?.to_string();
    if leaf == ".." || leaf == "." {
        return None;
    }
    let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
    Some((parent, leaf))
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::sys(format!("open {}", path.display()), e))?;
    // SAFETY: open just returned this descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `rel` below `root` as the container would resolve it: symlinks
/// (absolute ones too) stay inside `root` (openat2 RESOLVE_IN_ROOT).
fn open_in_root(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(root.as_raw_fd(), rel, how)?;
    // SAFETY: openat2 just returned this descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes `name` in the directory `dir`, a whole tree if it is a directory,
/// never following a symlink.
fn remove_at(dir: &OwnedFd, name: &str) -> nix::Result<()> {
    use nix::unistd::{unlinkat, UnlinkatFlags};
    match unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(nix::errno::Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: openat just returned this descriptor, owned by no one else.
    let sub = unsafe { OwnedFd::from_raw_fd(fd) };
    // The directory as opened (no path is resolved again).
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", sub.as_raw_fd()))
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    for entry in listing.flatten() {
        if let Some(child) = entry.file_name().to_str() {
            remove_at(&sub, child)?;
        }
    }
    match unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes each of `deleted` (deleted.files paths) from `rootfs`, resolving
/// them inside it; a path already absent is skipped. Returns how many went.
pub fn remove_deleted(rootfs: &Path, deleted: &[String]) -> Result<usize> {
    let root = open_dir(rootfs)?;
    let mut removed = 0;
    for rel in deleted {
        let Some((parent, leaf)) = split_rel(rel) else {
            continue;
        };
        let dir = match open_in_root(&root, &parent) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => continue,
            Err(e) => {
                return Err(RuntimeError::sys(
                    format!("open {} in {}", parent.display(), rootfs.display()),
                    e,
                ))
            }
        };
        remove_at(&dir, &leaf)
            .map_err(|e| RuntimeError::sys(format!("remove {rel} from {}", rootfs.display()), e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Puts a whiteout (char device 0/0) at each of `deleted` in the upper dir
/// `upper` of an overlay about to be mounted; missing parent directories are
/// made (never through a symlink).
pub fn write_whiteouts(upper: &Path, deleted: &[String]) -> Result<()> {
    let root = open_dir(upper)?;
    for rel in deleted {
        let Some((parent, leaf)) = split_rel(rel) else {
            continue;
        };
        let mut dir = root.try_clone().map_err(|e| RuntimeError::io(upper, e))?;
        for comp in parent.iter() {
            let comp = comp.to_str().unwrap_or("");
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = match nix::fcntl::openat(Some(dir.as_raw_fd()), comp, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(nix::errno::Errno::ENOENT) => {
                    nix::sys::stat::mkdirat(
                        Some(dir.as_raw_fd()),
                        comp,
                        Mode::from_bits_truncate(0o755),
                    )
                    .map_err(|e| RuntimeError::sys(format!("mkdir for whiteout {rel}"), e))?;
                    nix::fcntl::openat(Some(dir.as_raw_fd()), comp, flags, Mode::empty())
                        .map_err(|e| RuntimeError::sys(format!("open for whiteout {rel}"), e))?
                }
                Err(e) => return Err(RuntimeError::sys(format!("open for whiteout {rel}"), e)),
            };
            // SAFETY: openat just returned this descriptor, owned by no one else.
            dir = unsafe { OwnedFd::from_raw_fd(fd) };
        }
        match nix::sys::stat::mknodat(
            Some(dir.as_raw_fd()),
            leaf.as_str(),
            nix::sys::stat::SFlag::S_IFCHR,
            Mode::empty(),
            0,
        ) {
            // The diff holds that name again (it was made anew): keep it.
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(RuntimeError::sys(
                    format!("whiteout {rel} in {}", upper.display()),
                    e,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletions_stay_inside_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(rootfs.join("etc/dir/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(rootfs.join("etc/motd"), b"x").unwrap();
        std::fs::write(rootfs.join("etc/dir/sub/f"), b"x").unwrap();
        std::fs::write(outside.join("victim"), b"keep").unwrap();
        // A symlink pointing out of the rootfs resolves inside it instead.
        std::os::unix::fs::symlink(&outside, rootfs.join("escape")).unwrap();
        let n = remove_deleted(
            &rootfs,
            &[
                "/etc/motd".into(),
                "/etc/dir".into(),
                "/escape/victim".into(),
                "/absent/x".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            n, 2,
            "the escaping path resolves inside the rootfs, where it is absent"
        );
        assert!(!rootfs.join("etc/motd").exists());
        assert!(!rootfs.join("etc/dir").exists());
        assert!(outside.join("victim").exists());
        assert!(rootfs.join("etc").is_dir());
    }

    #[test]
    fn diff_entries_stay_relative_and_link_inside() {
        use tar::EntryType as T;
        let p = Path::new;
        assert_eq!(diff_entry_refusal(p("etc/motd"), T::Regular, None), None);
        assert_eq!(
            diff_entry_refusal(p("etc/x"), T::Symlink, Some(p("/etc/shadow"))),
            None
        );
        assert_eq!(
            diff_entry_refusal(p("etc/y"), T::Link, Some(p("etc/motd"))),
            None
        );
        assert!(diff_entry_refusal(p("etc/y"), T::Link, Some(p("/etc/shadow"))).is_some());
        assert!(diff_entry_refusal(p("etc/y"), T::Link, Some(p("../../etc/shadow"))).is_some());
        assert!(diff_entry_refusal(p("../escape"), T::Regular, None).is_some());
        assert!(diff_entry_refusal(p("/etc/passwd"), T::Regular, None).is_some());
        assert!(diff_entry_refusal(p("dev/sda"), T::Block, None).is_some());
    }

    #[test]
    fn whiteouts_are_char_devices_0_0() {
        let tmp = tempfile::tempdir().unwrap();
        write_whiteouts(tmp.path(), &["/etc/motd".into(), "/gone".into()]).unwrap();
        for p in ["etc/motd", "gone"] {
            let m = std::fs::symlink_metadata(tmp.path().join(p)).unwrap();
            assert!(is_whiteout(&m), "{p}");
        }
    }
}
