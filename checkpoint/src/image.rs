//! The image directory: `inventory.json`, one `process-N.json` per process and
//! `pages-N.img` with its raw pages. Files are 0600, the directory 0700; the
//! inventory (written last, with the checksums of every other file) is what
//! makes an image complete.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stream::{Sink, SinkWriter};

pub const FORMAT_MAJOR: u32 = 2;
/// The oldest major version this build still reads (format 1: memfd
/// contents as hex inside the process record).
pub const OLDEST_MAJOR: u32 = 1;
/// 2.1: `zombies` in the inventory (a 2.0 reader would drop them); 2.2:
/// `attrs` in process and thread records.
pub const FORMAT_MINOR: u32 = 2;
pub const INVENTORY: &str = "inventory.json";
pub const ARCH: &str = "x86_64";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatVersion {
    pub major: u32,
    pub minor: u32,
}

impl FormatVersion {
    pub const CURRENT: FormatVersion = FormatVersion {
        major: FORMAT_MAJOR,
        minor: FORMAT_MINOR,
    };

    fn check(&self, file: &Path) -> Result<()> {
        if !(OLDEST_MAJOR..=FORMAT_MAJOR).contains(&self.major) {
            return Err(Error::Version {
                file: file.to_path_buf(),
                found_major: self.major,
                found_minor: self.minor,
                supported: FORMAT_MAJOR,
            });
        }
        Ok(())
    }
}

/// Names a file of the image with the length and digest it must have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    pub len: u64,
    /// [`crate::digest`] of the content (uncompressed for page files).
    #[serde(default)]
    pub sha256: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    pub realtime_ns: u128,
    pub monotonic_ns: u128,
    pub boottime_ns: u128,
}

/// Identifies the kernel's vDSO: restoring onto a different one is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdsoFingerprint {
    pub vvar_pages: u64,
    pub vvar_vclock_pages: u64,
    pub vdso_pages: u64,
    pub vdso_crc32: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// Pid inside the dumped pid namespace.
    pub pid: i32,
    /// Parent's pid in the namespace; 0 for the root of the dumped tree.
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Thread ids in the namespace, leader first.
    pub tids: Vec<i32>,
    pub record: FileRef,
    pub pages: FileRef,
    pub pages_zstd: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub format: FormatVersion,
    pub godwit_version: String,
    pub arch: String,
    pub kernel_release: String,
    pub page_size: u64,
    pub vdso: Option<VdsoFingerprint>,
    pub dumped_at_unix_ns: u128,
    pub clocks: Clocks,
    pub root_pid: i32,
    pub processes: Vec<ProcessEntry>,
    /// Unreaped children of the processes (format 1.1).
    #[serde(default)]
    pub zombies: Vec<crate::zombie::ZombieEntry>,
    /// The caller's files (spec.dump, timens.dump, tmpfs.tar ...), each
    /// with its digest.
    #[serde(default)]
    pub extras: Vec<FileRef>,
}

/// Every per-process record starts with its format version.
pub trait Versioned {
    fn format(&self) -> FormatVersion;
}

pub fn create_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::image(dir, "image directory exists and is not empty"));
            }
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Whether `name` may name a file of an image: a plain name, no path.
pub fn is_plain_name(name: &str) -> bool {
    !(name.is_empty() || name.contains('/') || name.starts_with('.') || name.contains('\0'))
}

/// Writes a caller's file (a plain name, no path) into the image; returns
/// its reference for the inventory.
pub fn put_extra(sink: &mut dyn Sink, name: &str, bytes: &[u8]) -> Result<FileRef> {
    if !is_plain_name(name) || name == INVENTORY {
        return Err(Error::image(name, "extra file names must be plain names"));
    }
    sink.begin(name)?;
    sink.write(bytes)?;
    sink.end()?;
    Ok(FileRef {
        name: name.to_string(),
        len: bytes.len() as u64,
        sha256: crate::digest::of(bytes),
    })
}

/// Writes `value` as JSON; returns its reference for the inventory.
pub fn put_json<T: Serialize>(sink: &mut dyn Sink, name: &str, value: &T) -> Result<FileRef> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::image(name, e.to_string()))?;
    sink.begin(name)?;
    sink.write(&bytes)?;
    sink.end()?;
    Ok(FileRef {
        name: name.to_string(),
        len: bytes.len() as u64,
        sha256: crate::digest::of(&bytes),
    })
}

/// Writes the inventory, the last file of an image, and completes the sink.
pub fn put_inventory(sink: &mut dyn Sink, inv: &Inventory) -> Result<()> {
    put_json(sink, INVENTORY, inv)?;
    sink.complete()
}

/// Sequential writer of page data; digest and length are of the uncompressed bytes.
pub struct PagesWriter<'a> {
    name: String,
    out: PagesOut<'a>,
    hash: crate::digest::Hasher,
    len: u64,
}

enum PagesOut<'a> {
    Plain(&'a mut dyn Sink),
    Zstd(zstd::Encoder<'static, SinkWriter<'a>>),
}

impl<'a> PagesWriter<'a> {
    pub fn create(sink: &'a mut dyn Sink, name: &str, zstd_level: Option<i32>) -> Result<Self> {
        sink.begin(name)?;
        let out = match zstd_level {
            None => PagesOut::Plain(sink),
            Some(level) => {
                let enc =
                    zstd::Encoder::new(SinkWriter(sink), level).map_err(|e| Error::io(name, e))?;
                PagesOut::Zstd(enc)
            }
        };
        Ok(PagesWriter {
            name: name.to_string(),
            out,
            hash: crate::digest::Hasher::new(),
            len: 0,
        })
    }

    pub fn offset(&self) -> u64 {
        self.len
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hash.update(data);
        self.len += data.len() as u64;
        match &mut self.out {
            PagesOut::Plain(s) => s.write(data),
            PagesOut::Zstd(e) => e.write_all(data).map_err(|e| Error::io(&self.name, e)),
        }
    }

    pub fn finish(self) -> Result<FileRef> {
        let sink = match self.out {
            PagesOut::Plain(s) => s,
            PagesOut::Zstd(e) => e.finish().map_err(|e| Error::io(&self.name, e))?.0,
        };
        sink.end()?;
        Ok(FileRef {
            name: self.name,
            len: self.len,
            sha256: self.hash.finalize(),
        })
    }
}

/// A checked-in-full image: every file's checksum was verified on open, so a
/// restore from it does not start on a corrupt or truncated image.
pub struct ImageReader {
    pub dir: PathBuf,
    pub inventory: Inventory,
}

/// Opens a file of the image that must be a regular file of `len` bytes at
/// most `max` (checked before anything is read from it).
fn open_bounded(path: &Path, len: Option<u64>, max: u64) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::image(path, "not a regular file"));
    }
    if let Some(len) = len {
        if meta.len() != len {
            return Err(Error::image(
                path,
                format!("length {}, inventory says {len} (truncated?)", meta.len()),
            ));
        }
    }
    if meta.len() > max {
        return Err(Error::image(
            path,
            format!(
                "{} bytes, more than the {max} such a file may have",
                meta.len()
            ),
        ));
    }
    Ok(f)
}

/// Reads a whole file opened by [`open_bounded`] (its size is known and bounded).
fn read_bounded(path: &Path, f: File, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// Memory this host could give a decompressed page file (MemAvailable).
fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb.saturating_mul(1024))
}

impl ImageReader {
    /// Reads and checks the inventory (version, architecture, page size, the
    /// bounds of [`crate::limits`] and the process tree) and every extra
    /// file's digest.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(INVENTORY);
        let f = open_bounded(&path, None, crate::limits::MAX_INVENTORY_BYTES)?;
        let bytes = read_bounded(&path, f, crate::limits::MAX_INVENTORY_BYTES)?;
        // Check the version before the full parse: a newer major may not parse.
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::image(&path, format!("not valid JSON (truncated?): {e}")))?;
        let format: FormatVersion =
            serde_json::from_value(v.get("format").cloned().unwrap_or_default())
                .map_err(|e| Error::image(&path, format!("field format: {e}")))?;
        format.check(&path)?;
        let inventory: Inventory =
            serde_json::from_value(v).map_err(|e| Error::image(&path, e.to_string()))?;
        if inventory.arch != ARCH {
            return Err(Error::image(
                &path,
                format!(
                    "field arch: image is for {}, this host is {ARCH}",
                    inventory.arch
                ),
            ));
        }
        let page_size = crate::page_size();
        if inventory.page_size != page_size {
            return Err(Error::image(
                &path,
                format!(
                    "field page_size: image has {}, host has {page_size}",
                    inventory.page_size
                ),
            ));
        }
        crate::limits::check_inventory(&path, &inventory)?;
        let names = inventory
            .processes
            .iter()
            .flat_map(|p| [&p.record, &p.pages])
            .chain(&inventory.extras);
        let mut seen = std::collections::HashSet::new();
        for r in names {
            if !is_plain_name(&r.name) || r.name == INVENTORY || !seen.insert(r.name.as_str()) {
                return Err(Error::image(
                    &path,
                    format!("file name {:?}: not a plain name, or named twice", r.name),
                ));
            }
            if !crate::digest::is_digest(&r.sha256) {
                return Err(Error::image(
                    dir.join(&r.name),
                    "no SHA-256 in the inventory (an image written before godwit recorded \
                     digests, or a damaged inventory): checkpoint again",
                ));
            }
        }
        let reader = ImageReader {
            dir: dir.to_path_buf(),
            inventory,
        };
        for r in &reader.inventory.extras {
            reader.read_checked(r, EXTRA_MAX)?;
        }
        Ok(reader)
    }

    /// The processes' indexes, parents first (checked at open: no cycle).
    pub fn tree_order(&self) -> Result<Vec<usize>> {
        crate::limits::check_inventory(&self.dir.join(INVENTORY), &self.inventory)
    }

    /// A file of the image, checked against its length and digest.
    fn read_checked(&self, fref: &FileRef, max: u64) -> Result<Vec<u8>> {
        let path = self.dir.join(&fref.name);
        crate::limits::check_len(&path, fref, max)?;
        let f = open_bounded(&path, Some(fref.len), max)?;
        let bytes = read_bounded(&path, f, max)?;
        check_sum(&path, &bytes, fref)?;
        Ok(bytes)
    }

    /// A caller's file (see `DumpOptions::extra_files`), verified; `None`
    /// if the image has no such file.
    pub fn extra(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.inventory.extras.iter().find(|r| r.name == name) {
            Some(r) => self.read_checked(r, EXTRA_MAX).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a record, checking length and digest from the inventory and its version.
    pub fn read_json<T: DeserializeOwned + Versioned>(&self, fref: &FileRef) -> Result<T> {
        let path = self.dir.join(&fref.name);
        let bytes = self.read_checked(fref, crate::limits::MAX_RECORD_BYTES)?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::image(&path, e.to_string()))?;
        let format: FormatVersion =
            serde_json::from_value(v.get("format").cloned().unwrap_or_default())
                .map_err(|e| Error::image(&path, format!("field format: {e}")))?;
        format.check(&path)?;
        let t: T = serde_json::from_value(v).map_err(|e| Error::image(&path, e.to_string()))?;
        Ok(t)
    }

    /// The page data of one process, verified. A compressed file's claimed
    /// size must fit this host's available memory, and no more than it is
    /// decompressed.
    pub fn pages(&self, fref: &FileRef, zstd: bool) -> Result<Pages> {
        use std::io::Read;
        let path = self.dir.join(&fref.name);
        let pages = if zstd {
            let avail = mem_available();
            crate::limits::check_len(&path, fref, avail)?;
            let f = open_bounded(&path, None, u64::MAX)?;
            let mut out = Vec::with_capacity(fref.len.min(64 << 20) as usize);
            let dec = zstd::Decoder::new(f).map_err(|e| Error::io(&path, e))?;
            dec.take(fref.len + 1)
                .read_to_end(&mut out)
                .map_err(|e| Error::image(&path, format!("zstd stream: {e}")))?;
            Pages::Owned(out)
        } else {
            let f = open_bounded(&path, Some(fref.len), u64::MAX)?;
            let len = usize::try_from(fref.len)
                .map_err(|_| Error::image(&path, "larger than the address space"))?;
            Pages::map(&f, len).map_err(|e| Error::io(&path, e))?
        };
        check_sum(&path, pages.as_slice(), fref)?;
        Ok(pages)
    }
}

/// Extra files (spec, clocks, terminal, network, tmpfs contents).
const EXTRA_MAX: u64 = 16 << 30;

fn check_sum(path: &Path, bytes: &[u8], fref: &FileRef) -> Result<()> {
    if bytes.len() as u64 != fref.len {
        return Err(Error::image(
            path,
            format!(
                "length {}, inventory says {} (truncated?)",
                bytes.len(),
                fref.len
            ),
        ));
    }
    let sum = crate::digest::of(bytes);
    if sum != fref.sha256 {
        return Err(Error::image(
            path,
            format!(
                "SHA-256 {sum}, inventory says {}: image is corrupt or was modified",
                fref.sha256
            ),
        ));
    }
    Ok(())
}

/// Page data in memory: a read-only mapping of the file, or a decompressed buffer.
pub enum Pages {
    Mapped { ptr: *mut libc::c_void, len: usize },
    Owned(Vec<u8>),
}

impl Pages {
    fn map(f: &File, len: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Ok(Pages::Owned(Vec::new()));
        }
        // SAFETY: a fresh private read-only mapping of a file we opened.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Pages::Mapped { ptr, len })
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping lives as long as self and is never written.
            Pages::Mapped { ptr, len } => unsafe {
                std::slice::from_raw_parts(*ptr as *const u8, *len)
            },
            Pages::Owned(v) => v,
        }
    }
}

// SAFETY: a mapping owned by one Pages value, only ever read; moving it to
// another thread (e.g. to unmap it there) or reading it from several is fine.
unsafe impl Send for Pages {}
unsafe impl Sync for Pages {}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Pages::Mapped { ptr, len } = self {
            // SAFETY: unmapping exactly what map() mapped.
            unsafe { libc::munmap(*ptr, *len) };
        }
    }
}
