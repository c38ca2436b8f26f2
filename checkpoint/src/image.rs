//! The image directory: `inventory.json`, one `process-N.json` per process and
//! `pages-N.img` with its raw pages. Files are 0600, the directory 0700; the
//! inventory (written last, with the checksums of every other file) is what
//! makes an image complete.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::stream::{Sink, SinkWriter};

pub const FORMAT_MAJOR: u32 = 1;
pub const FORMAT_MINOR: u32 = 0;
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
        if self.major != FORMAT_MAJOR {
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

/// Names a file of the image with the length and CRC-32 it must have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    pub len: u64,
    pub crc32: u32,
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

/// Writes a caller's file (a plain name, no path) into the image.
pub fn put_extra(sink: &mut dyn Sink, name: &str, bytes: &[u8]) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::image(name, "extra file names must be plain names"));
    }
    sink.begin(name)?;
    sink.write(bytes)?;
    sink.end()
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
        crc32: crc32fast::hash(&bytes),
    })
}

/// Writes the inventory, the last file of an image, and completes the sink.
pub fn put_inventory(sink: &mut dyn Sink, inv: &Inventory) -> Result<()> {
    put_json(sink, INVENTORY, inv)?;
    sink.complete()
}

/// Sequential writer of page data; CRC and length are of the uncompressed bytes.
pub struct PagesWriter<'a> {
    name: String,
    out: PagesOut<'a>,
    crc: crc32fast::Hasher,
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
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    pub fn offset(&self) -> u64 {
        self.len
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.crc.update(data);
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
            crc32: self.crc.finalize(),
        })
    }
}

/// A checked-in-full image: every file's checksum was verified on open, so a
/// restore from it does not start on a corrupt or truncated image.
pub struct ImageReader {
    pub dir: PathBuf,
    pub inventory: Inventory,
}

impl ImageReader {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(INVENTORY);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
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
        Ok(ImageReader {
            dir: dir.to_path_buf(),
            inventory,
        })
    }

    /// Reads a record, checking length and CRC from the inventory and its version.
    pub fn read_json<T: DeserializeOwned + Versioned>(&self, fref: &FileRef) -> Result<T> {
        let path = self.dir.join(&fref.name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        check_sum(&path, &bytes, fref)?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::image(&path, e.to_string()))?;
        let format: FormatVersion =
            serde_json::from_value(v.get("format").cloned().unwrap_or_default())
                .map_err(|e| Error::image(&path, format!("field format: {e}")))?;
        format.check(&path)?;
        let t: T = serde_json::from_value(v).map_err(|e| Error::image(&path, e.to_string()))?;
        Ok(t)
    }

    /// The page data of one process, verified.
    pub fn pages(&self, fref: &FileRef, zstd: bool) -> Result<Pages> {
        let path = self.dir.join(&fref.name);
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let pages = if zstd {
            let mut out = Vec::with_capacity(fref.len as usize);
            let mut dec = zstd::Decoder::new(f).map_err(|e| Error::io(&path, e))?;
            std::io::copy(&mut dec, &mut out)
                .map_err(|e| Error::image(&path, format!("zstd stream: {e}")))?;
            Pages::Owned(out)
        } else {
            let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
            if len != fref.len {
                return Err(Error::image(
                    &path,
                    format!("length {len}, inventory says {} (truncated?)", fref.len),
                ));
            }
            Pages::map(&f, len as usize).map_err(|e| Error::io(&path, e))?
        };
        check_sum(&path, pages.as_slice(), fref)?;
        Ok(pages)
    }
}

/// CRC-32 of large buffers in two halves on two threads (for a mapped pages
/// file this also faults the mapping in from both), combined.
fn crc_parallel(bytes: &[u8]) -> u32 {
    if bytes.len() < (64 << 20) {
        return crc32fast::hash(bytes);
    }
    let (a, b) = bytes.split_at(bytes.len() / 2);
    std::thread::scope(|s| {
        let hb = s.spawn(|| {
            crate::boost::unpin_current();
            let mut h = crc32fast::Hasher::new();
            h.update(b);
            h
        });
        let mut ha = crc32fast::Hasher::new();
        ha.update(a);
        match hb.join() {
            Ok(hb) => {
                ha.combine(&hb);
                ha.finalize()
            }
            Err(_) => crc32fast::hash(bytes),
        }
    })
}

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
    let crc = crc_parallel(bytes);
    if crc != fref.crc32 {
        return Err(Error::image(
            path,
            format!(
                "CRC-32 {crc:08x}, inventory says {:08x}: image is corrupt",
                fref.crc32
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
