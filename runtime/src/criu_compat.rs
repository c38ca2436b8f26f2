//! What engines built around CRIU (podman, CRI-O) look for in a checkpoint,
//! written by godwit beside its own image (see docs/image-format.md):
//!
//! - `inventory.img` in the image directory: podman stats it before it lets
//!   a runtime restore ("a complete checkpoint ... cannot be found"). godwit's
//!   inventory stays `inventory.json`; this file only marks a complete image
//!   and is not a CRIU image (CRIU's tools refuse its magic).
//! - `stats-dump` / `stats-restore` in the work path, in CRIU's statistics
//!   format (the image service magic, the stats magic, a length and a
//!   protobuf `stats_entry`), which podman reads for `--print-stats` and
//!   puts in the archive of `--export`.
//! - An image directory holding an earlier godwit checkpoint is replaced by a
//!   new checkpoint (podman checkpoints into the same directory again after
//!   `checkpoint --leave-running`, as CRIU overwrites its files).

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// The marker podman looks for.
pub const INVENTORY_MARKER: &str = "inventory.img";
/// CRIU's statistics of a dump, in the work path.
pub const STATS_DUMP: &str = "stats-dump";
/// CRIU's statistics of a restore, in the work path.
pub const STATS_RESTORE: &str = "stats-restore";

/// CRIU's magic of images that are not part of a process image ("service").
const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// CRIU's magic of the statistics image.
const STATS_MAGIC: u32 = 0x5709_3306;

/// The marker's content: what it is, for whoever opens it.
pub fn marker_text() -> &'static str {
    "godwit checkpoint image: its inventory is inventory.json. This file only marks \
     the image as complete for engines that look for CRIU's inventory.img; it is not \
     a CRIU image.\n"
}

/// Writes the marker into a complete image directory (0600, as every file
/// of an image).
pub fn write_marker(image: &Path) -> Result<()> {
    write_private(&image.join(INVENTORY_MARKER), marker_text().as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| RuntimeError::io(path, e))
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field (wire type 0).
fn field(out: &mut Vec<u8>, number: u32, v: u64) {
    varint(out, u64::from(number) << 3);
    varint(out, v);
}

/// A sub-message field (wire type 2).
fn message(out: &mut Vec<u8>, number: u32, body: &[u8]) {
    varint(out, (u64::from(number) << 3) | 2);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn u32_us(v: u64) -> u64 {
    v.min(u64::from(u32::MAX))
}

/// The statistics file around a `stats_entry` payload.
fn stats_file(entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + entry.len());
    out.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
    out.extend_from_slice(&STATS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
    out.extend_from_slice(entry);
    out
}

/// `stats-dump` of a godwit dump: CRIU's `dump_stats_entry` (times in µs).
/// Every required field is written; godwit does not time the page writes
/// apart from the page reads (memwrite_time 0: both are in memdump_time),
/// has no parent images (pages_skipped_parent 0) nor lazy pages, and counts
/// the pages it writes (pages_scanned = pages_written).
pub fn stats_dump_bytes(stats: &godwit_checkpoint::DumpStats) -> Vec<u8> {
    let mut dump = Vec::new();
    field(&mut dump, 1, u32_us(stats.freeze_us)); // freezing_time
    field(&mut dump, 2, u32_us(stats.frozen_us)); // frozen_time
    field(&mut dump, 3, u32_us(stats.memdump_us)); // memdump_time
    field(&mut dump, 4, 0); // memwrite_time
    field(&mut dump, 5, stats.pages_written); // pages_scanned
    field(&mut dump, 6, 0); // pages_skipped_parent
    field(&mut dump, 7, stats.pages_written); // pages_written
    field(&mut dump, 9, 0); // pages_lazy
    let mut entry = Vec::new();
    message(&mut entry, 1, &dump); // stats_entry.dump
    stats_file(&entry)
}

/// `stats-restore` of a godwit restore: CRIU's `restore_stats_entry`. godwit
/// compares no pages with a parent (0, 0) and does not time the forks apart
/// (forking_time 0: restore_time is the whole rebuild, in µs).
pub fn stats_restore_bytes(stats: &godwit_checkpoint::RestoreStats) -> Vec<u8> {
    let mut restore = Vec::new();
    field(&mut restore, 1, 0); // pages_compared
    field(&mut restore, 2, 0); // pages_skipped_cow
    field(&mut restore, 3, 0); // forking_time
    field(&mut restore, 4, u32_us(stats.total_us)); // restore_time
    field(&mut restore, 5, stats.pages_restored); // pages_restored
    let mut entry = Vec::new();
    message(&mut entry, 2, &restore); // stats_entry.restore
    stats_file(&entry)
}

/// Writes a statistics file into the work path.
pub fn write_stats(work_path: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    write_private(&work_path.join(name), bytes)
}

/// What to do with an existing image directory before a dump.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageDir {
    /// Missing or empty: dump into it.
    Empty,
    /// An earlier godwit checkpoint (its inventory and plain files only):
    /// remove these files, then dump into it.
    Replace(Vec<String>),
    /// Anything else: refused, for this reason.
    Refuse(String),
}

/// Decides from the directory's entries (name, is a regular file).
pub fn decide_image_dir(entries: &[(String, bool)]) -> ImageDir {
    if entries.is_empty() {
        return ImageDir::Empty;
    }
    if !entries
        .iter()
        .any(|(n, f)| *f && n == godwit_checkpoint::image::INVENTORY)
    {
        return ImageDir::Refuse(format!(
            "the image directory is not empty and holds no earlier godwit checkpoint (no {}); \
             choose another --image-path",
            godwit_checkpoint::image::INVENTORY
        ));
    }
    if let Some((n, _)) = entries.iter().find(|(_, f)| !f) {
        return ImageDir::Refuse(format!(
            "the image directory holds an earlier checkpoint and {n}, which is not a regular \
             file; remove it or choose another --image-path"
        ));
    }
    ImageDir::Replace(entries.iter().map(|(n, _)| n.clone()).collect())
}

/// Readies `image` for a dump: an earlier godwit checkpoint there is
/// removed (a new checkpoint replaces it), anything else refused.
pub fn prepare_image_dir(image: &Path) -> Result<()> {
    let it = match std::fs::read_dir(image) {
        Ok(it) => it,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(image, e)),
    };
    let mut entries = Vec::new();
    for ent in it {
        let ent = ent.map_err(|e| RuntimeError::io(image, e))?;
        let is_file = ent.file_type().map(|t| t.is_file()).unwrap_or(false);
        entries.push((ent.file_name().to_string_lossy().into_owned(), is_file));
    }
    match decide_image_dir(&entries) {
        ImageDir::Empty => Ok(()),
        ImageDir::Replace(names) => {
            // The inventory first: a half-removed image is never taken for complete.
            let mut order: Vec<PathBuf> = vec![image.join(godwit_checkpoint::image::INVENTORY)];
            order.push(image.join(INVENTORY_MARKER));
            order.extend(names.iter().map(|n| image.join(n)));
            for path in order {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(RuntimeError::io(&path, e)),
                }
            }
            tracing::info!(image = %image.display(), "replaced the earlier checkpoint in the image directory");
            Ok(())
        }
        ImageDir::Refuse(reason) => Err(RuntimeError::Bundle {
            path: image.to_path_buf(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut v = Vec::new();
        field(&mut v, 14, 1);
        assert_eq!(v, [0x70, 0x01]);
    }

    #[test]
    fn stats_dump_layout() {
        let stats = godwit_checkpoint::DumpStats {
            freeze_us: 1,
            frozen_us: 2,
            memdump_us: 3,
            pages_written: 300,
            ..Default::default()
        };
        let b = stats_dump_bytes(&stats);
        assert_eq!(&b[0..4], &0x5510_5940u32.to_le_bytes());
        assert_eq!(&b[4..8], &0x5709_3306u32.to_le_bytes());
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        assert_eq!(len, b.len() - 12);
        // stats_entry.dump, length, then the fields in order.
        let p = &b[12..];
        assert_eq!(p[0], 0x0a);
        assert_eq!(p[1] as usize, p.len() - 2);
        assert_eq!(
            &p[2..],
            &[
                0x08, 1, 0x10, 2, 0x18, 3, 0x20, 0, 0x28, 0xac, 0x02, 0x30, 0, 0x38, 0xac, 0x02,
                0x48, 0
            ]
        );
    }

    #[test]
    fn stats_restore_is_field_two() {
        let stats = godwit_checkpoint::RestoreStats {
            pages_restored: 5,
            total_us: 7,
            ..Default::default()
        };
        let b = stats_restore_bytes(&stats);
        assert_eq!(
            &b[12..],
            &[0x12, 10, 0x08, 0, 0x10, 0, 0x18, 0, 0x20, 7, 0x28, 5]
        );
    }

    #[test]
    fn image_dir_decisions() {
        let s = |n: &str, f: bool| (n.to_string(), f);
        assert_eq!(decide_image_dir(&[]), ImageDir::Empty);
        assert_eq!(
            decide_image_dir(&[s("inventory.json", true), s("pages-1.img", true)]),
            ImageDir::Replace(vec!["inventory.json".into(), "pages-1.img".into()])
        );
        assert!(matches!(
            decide_image_dir(&[s("notes.txt", true)]),
            ImageDir::Refuse(r) if r.contains("no inventory.json")
        ));
        assert!(matches!(
            decide_image_dir(&[s("inventory.json", true), s("sub", false)]),
            ImageDir::Refuse(r) if r.contains("sub")
        ));
        // A directory named like the inventory is no inventory.
        assert!(matches!(
            decide_image_dir(&[s("inventory.json", false)]),
            ImageDir::Refuse(_)
        ));
    }

    #[test]
    fn marker_is_not_a_criu_image() {
        let m = marker_text().as_bytes();
        assert_ne!(&m[0..4], &IMG_SERVICE_MAGIC.to_le_bytes());
        assert_ne!(&m[0..4], &0x5831_3116u32.to_le_bytes());
    }
}
