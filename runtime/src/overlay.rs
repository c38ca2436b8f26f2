//! Overlay rootfs: finding the overlay mounted at a container's rootfs (what
//! podman and containerd give a container), and mounting one for a bundle
//! recreated from a checkpoint archive.

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// An overlay mount's directories, as /proc/self/mountinfo shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayMount {
    /// Lower dirs, top first.
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The overlay mounted at `path` (a canonical path), if the last mount there
/// is one; `None` for a plain directory.
pub fn mounted_at(path: &Path) -> Result<Option<OverlayMount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RuntimeError::io("/proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text, path))
}

fn parse_mountinfo(text: &str, path: &Path) -> Option<OverlayMount> {
    let mut found = None;
    for line in text.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source super-options
        let (left, right) = match line.split_once(" - ") {
            Some(p) => p,
            None => continue,
        };
        let mount_point = match left.split(' ').nth(4) {
            Some(m) => unescape(m),
            None => continue,
        };
        if Path::new(&mount_point) != path {
            continue;
        }
        let mut f = right.split(' ');
        let fstype = f.next().unwrap_or("");
        let super_opts = f.nth(1).unwrap_or("");
        // A later mount over the same point hides an earlier one.
        found = (fstype == "overlay").then(|| overlay_options(super_opts));
    }
    found.flatten()
}

fn overlay_options(opts: &str) -> Option<OverlayMount> {
    let mut lowerdirs = Vec::new();
    let mut upperdir = None;
    for opt in opts.split(',') {
        if let Some(v) = opt.strip_prefix("lowerdir=") {
            // `::` separates data-only lower layers; they hold no names.
            let regular = v.split("::").next().unwrap_or("");
            lowerdirs.extend(
                regular
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(|s| PathBuf::from(unescape(s))),
            );
        } else if let Some(v) = opt.strip_prefix("lowerdir+=") {
            lowerdirs.push(PathBuf::from(unescape(v)));
        } else if let Some(v) = opt.strip_prefix("upperdir=") {
            upperdir = Some(PathBuf::from(unescape(v)));
        }
    }
    // A read-only overlay (no upper) holds no changes of the container.
    Some(OverlayMount {
        lowerdirs,
        upperdir: upperdir?,
    })
}

/// Refuses a directory that cannot be named in overlay's mount options.
pub fn check_option_path(path: &Path) -> std::result::Result<(), &'static str> {
    let s = path.to_str().ok_or("the path is not UTF-8")?;
    if !path.is_absolute() {
        return Err("the path is not absolute");
    }
    if path.parent().is_none() {
        return Err("the path is the host's root directory");
    }
    if s.contains([':', ',', '\0', '\n']) {
        return Err(
            "the path holds ':', ',', a newline or NUL, which overlay's mount options cannot carry",
        );
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err("the path has a `..` component");
    }
    Ok(())
}

/// Mounts an overlay of `lowerdirs` (top first) with `upper` and `work` at `target`.
pub fn mount(lowerdirs: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let join = |p: &Path| p.display().to_string();
    let lower: Vec<String> = lowerdirs.iter().map(|p| join(p)).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        join(upper),
        join(work)
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| RuntimeError::sys(format!("mount overlay ({data}) at {}", target.display()), e))
}

/// Unmounts `target` (lazily if busy: the container's processes are gone, a
/// reader elsewhere must not keep the bundle from being removed).
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| RuntimeError::sys(format!("unmount {}", target.display()), e))
        }
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(RuntimeError::sys(
            format!("unmount {}", target.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_overlay_at_a_path() {
        let text = "44 27 0:39 / /tmp/b/rootfs rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w,uuid=on\n\
                    45 27 0:40 / /tmp/other rw - ext4 /dev/vda rw\n";
        let m = parse_mountinfo(text, Path::new("/tmp/b/rootfs")).unwrap();
        assert_eq!(
            m.lowerdirs,
            vec![PathBuf::from("/l1"), PathBuf::from("/l2")]
        );
        assert_eq!(m.upperdir, PathBuf::from("/u"));
        assert!(parse_mountinfo(text, Path::new("/tmp/other")).is_none());
        let hidden = format!("{text}46 27 0:41 / /tmp/b/rootfs rw - tmpfs tmpfs rw\n");
        assert!(parse_mountinfo(&hidden, Path::new("/tmp/b/rootfs")).is_none());
    }

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn option_paths() {
        assert!(check_option_path(Path::new("/var/lib/x")).is_ok());
        assert!(check_option_path(Path::new("rel")).is_err());
        assert!(check_option_path(Path::new("/a:b")).is_err());
        assert!(check_option_path(Path::new("/a/../b")).is_err());
        assert!(check_option_path(Path::new("/")).is_err());
    }
}
