//! Address space: VMAs from /proc/PID/maps, populated pages from pagemap,
//! mm fields (PR_SET_MM_MAP), and the vDSO. Dump and restore side by side.
//!
//! Private file mappings are re-mapped from the file at restore and only their
//! anonymous (COW-ed) pages are in the image; anonymous mappings carry every
//! present or swapped page. vvar content is never dumped: restore maps this
//! kernel's vDSO at the dumped address.

use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::{PagesWriter, VdsoFingerprint};
use crate::proc::{self, MapsEntry};
use crate::ptrace::{self, Injector, Mem};
use crate::sys::{self, Scratch};

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Piece of a page run handed to one of the parallel restore writers.
const PARALLEL_CHUNK: usize = 4 << 20;

/// Pages read per process_vm_readv batch (and per write to the image).
const BATCH: usize = 8 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmaKind {
    /// Private or shared anonymous memory (heap, stacks, MAP_ANONYMOUS, memfd/shm contents).
    Anon,
    /// A mapping of a file that still exists at `path`.
    File {
        path: String,
        offset: u64,
        inode: u64,
        /// Size and CRC-32 of the content at dump: restore refuses a changed
        /// file, whose pages would silently differ from the dumped process's
        /// (mtime is not compared: a copied rootfs has new mtimes).
        #[serde(default)]
        size: u64,
        #[serde(default)]
        crc32: u32,
    },
}

/// (size, CRC-32 of the content) of a mapped regular file, reading no more
/// than its size (a mapped device would read without end).
fn fingerprint(pid: i32, path: &str) -> Result<(u64, u32)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = f.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::Unsupported {
            pid,
            what: format!("a file mapping of {path}, {}", file_kind(&meta)),
        });
    }
    let crc = crc_of(&mut f, meta.len()).map_err(|e| Error::io(path, e))?;
    Ok((meta.len(), crc))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    pub shared: bool,
    pub growsdown: bool,
    /// Name in maps ("[heap]", "[stack]", a path, ...), informational.
    pub name: String,
    pub kind: VmaKind,
    /// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, memfd, SysV): the
    /// shmem inode, the same in every process mapping the same object.
    #[serde(default)]
    pub shm_inode: Option<u64>,
    /// Size of that shared object (st_size through /proc/PID/map_files).
    #[serde(default)]
    pub shm_size: u64,
    /// MADV_* advice to apply again (from smaps VmFlags: hg, nh, dc, wf, dd, mg).
    #[serde(default)]
    pub madvise: Vec<i32>,
}

/// VmFlags of every VMA (by start address) from /proc/PID/smaps.
fn vm_flags(pid: i32) -> Result<std::collections::HashMap<u64, Vec<String>>> {
    let path = format!("/proc/{pid}/smaps");
    let text = proc::read_string(&path)?;
    let mut out = std::collections::HashMap::new();
    let mut cur: Option<u64> = None;
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(start) = cur {
                out.insert(
                    start,
                    flags.split_whitespace().map(str::to_string).collect(),
                );
            }
        } else if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, _)) = range.split_once('-') {
                if let Ok(start) = u64::from_str_radix(a, 16) {
                    cur = Some(start);
                }
            }
        }
    }
    Ok(out)
}

/// The advice that smaps flags stand for and that restore must repeat.
fn advice_of(flags: &[String]) -> Vec<i32> {
    let mut v = Vec::new();
    for f in flags {
        match f.as_str() {
            "hg" => v.push(libc::MADV_HUGEPAGE),
            "nh" => v.push(libc::MADV_NOHUGEPAGE),
            "dc" => v.push(libc::MADV_DONTFORK),
            "wf" => v.push(libc::MADV_WIPEONFORK),
            "dd" => v.push(libc::MADV_DONTDUMP),
            "mg" => v.push(libc::MADV_MERGEABLE),
            _ => {}
        }
    }
    v
}

/// A run of consecutive pages stored at `offset` in the pages file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRun {
    pub addr: u64,
    pub pages: u64,
    pub offset: u64,
}

/// The fields PR_SET_MM_MAP takes (see prctl(2)), plus auxv and the exe path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: Vec<u64>,
    pub exe: String,
}

/// Where [vvar] started (ARCH_MAP_VDSO_64 takes it) and where [vdso] was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdsoPlace {
    pub vvar_start: u64,
    pub vdso_start: u64,
    pub vdso_end: u64,
}

/// Image record of one address space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryImage {
    pub vmas: Vec<Vma>,
    pub mm: MmFields,
    pub vdso: Option<VdsoPlace>,
    pub runs: Vec<PageRun>,
    pub pages_total: u64,
}

pub fn is_vdso_name(name: &str) -> bool {
    matches!(name, "[vvar]" | "[vvar_vclock]" | "[vdso]")
}

fn prot_of(m: &MapsEntry) -> u32 {
    let mut p = 0;
    if m.read {
        p |= libc::PROT_READ;
    }
    if m.write {
        p |= libc::PROT_WRITE;
    }
    if m.exec {
        p |= libc::PROT_EXEC;
    }
    p as u32
}

/// Shared anonymous memory shows up as a deleted pseudo-file.
fn is_anon_shared_name(name: &str) -> bool {
    name.starts_with("/dev/zero") || name.starts_with("/memfd:") || name.starts_with("/SYSV")
}

/// The vDSO of `pid` (its layout and a CRC of its code).
pub fn vdso_fingerprint(pid: i32, maps: &[MapsEntry]) -> Result<Option<VdsoFingerprint>> {
    let pages = |name: &str| {
        maps.iter()
            .find(|m| m.path == name)
            .map(|m| (m.end - m.start) / crate::page_size())
    };
    let Some(vdso) = maps.iter().find(|m| m.path == "[vdso]") else {
        return Ok(None);
    };
    let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
    Mem::open(pid)?.read(vdso.start, &mut code)?;
    Ok(Some(VdsoFingerprint {
        vvar_pages: pages("[vvar]").unwrap_or(0),
        vvar_vclock_pages: pages("[vvar_vclock]").unwrap_or(0),
        vdso_pages: pages("[vdso]").unwrap_or(0),
        vdso_crc32: crc32fast::hash(&code),
    }))
}

/// Address of a `syscall` instruction in the vDSO of `pid`: dump-time
/// injection runs there, so the target's own code is never written.
pub fn vdso_syscall_insn(pid: i32, maps: &[MapsEntry]) -> Result<u64> {
    let vdso = maps
        .iter()
        .find(|m| m.path == "[vdso]")
        .ok_or_else(|| Error::Unsupported {
            pid,
            what: "a process without a [vdso] mapping".into(),
        })?;
    let mut code = vec![0u8; (vdso.end - vdso.start) as usize];
    Mem::open(pid)?.read(vdso.start, &mut code)?;
    code.windows(2)
        .position(|w| w == ptrace::SYSCALL_INSN)
        .map(|off| vdso.start + off as u64)
        .ok_or_else(|| Error::Vdso(format!("no syscall instruction in the vDSO of pid {pid}")))
}

/// Reads mm fields from /proc (and `brk`, which only an injected brk(0) tells).
pub fn dump_mm(pid: i32, brk: u64) -> Result<MmFields> {
    let st = proc::Stat::read(pid)?;
    let auxv_path = format!("/proc/{pid}/auxv");
    let raw = std::fs::read(&auxv_path).map_err(|e| Error::io(&auxv_path, e))?;
    let auxv = raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    let exe = proc::read_link(format!("/proc/{pid}/exe"))?;
    Ok(MmFields {
        start_code: st.field(26)?,
        end_code: st.field(27)?,
        start_stack: st.field(28)?,
        start_data: st.field(45)?,
        end_data: st.field(46)?,
        start_brk: st.field(47)?,
        brk,
        arg_start: st.field(48)?,
        arg_end: st.field(49)?,
        env_start: st.field(50)?,
        env_end: st.field(51)?,
        auxv,
        exe: exe.to_string_lossy().into_owned(),
    })
}

/// Dumps the VMAs of a stopped process and writes its populated pages:
/// describe the VMAs and find their populated pages (pagemap), plan the
/// copy in batches and lay out the page runs, copy.
pub fn dump(
    pid: i32,
    maps: &[MapsEntry],
    mm: MmFields,
    out: &mut PagesWriter,
) -> Result<MemoryImage> {
    let ps = crate::page_size();
    let (vmas, vdso, todo) = describe_vmas(pid, maps, ps)?;
    let (batches, runs) = plan_copy(&todo, ps, BATCH, out.offset());
    copy_batches(pid, &batches, out)?;
    let pages_total = runs.iter().map(|r| r.pages).sum();
    Ok(MemoryImage {
        vmas,
        mm,
        vdso,
        runs,
        pages_total,
    })
}

/// A run of pages to copy: address, number of pages, and whether
/// process_vm_readv can read it (the VMA is readable).
type Todo = (u64, u64, bool);

/// The image's VMAs (file mappings fingerprinted), the vDSO's place, and
/// the runs of populated pages that differ from their file.
fn describe_vmas(
    pid: i32,
    maps: &[MapsEntry],
    ps: u64,
) -> Result<(Vec<Vma>, Option<VdsoPlace>, Vec<Todo>)> {
    let pagemap_path = format!("/proc/{pid}/pagemap");
    let pagemap = std::fs::File::open(&pagemap_path).map_err(|e| Error::io(&pagemap_path, e))?;
    let mut vmas = Vec::new();
    let mut vdso = None;
    let flags = vm_flags(pid)?;
    let mut fingerprints: std::collections::HashMap<String, (u64, u32)> = Default::default();
    let mut todo: Vec<Todo> = Vec::new();
    for m in maps {
        if m.path == "[vsyscall]" {
            continue;
        }
        if is_vdso_name(&m.path) {
            let place = vdso.get_or_insert(VdsoPlace {
                vvar_start: m.start,
                vdso_start: 0,
                vdso_end: 0,
            });
            place.vvar_start = place.vvar_start.min(m.start);
            if m.path == "[vdso]" {
                place.vdso_start = m.start;
                place.vdso_end = m.end;
            }
            continue;
        }
        let file_backed = m.path.starts_with('/') && m.inode != 0 && !is_anon_shared_name(&m.path);
        if file_backed && m.path.ends_with(" (deleted)") {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "mapping {:#x}-{:#x} of deleted file {}",
                    m.start, m.end, m.path
                ),
            });
        }
        let kind = if file_backed {
            let (size, crc32) = match fingerprints.get(&m.path) {
                Some(&f) => f,
                None => {
                    let f = fingerprint(
                        pid,
                        &format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end),
                    )?;
                    fingerprints.insert(m.path.clone(), f);
                    f
                }
            };
            VmaKind::File {
                path: m.path.clone(),
                offset: m.offset,
                inode: m.inode,
                size,
                crc32,
            }
        } else {
            VmaKind::Anon
        };
        vmas.push(Vma {
            start: m.start,
            end: m.end,
            prot: prot_of(m),
            shared: m.shared,
            growsdown: flags
                .get(&m.start)
                .map_or(m.path == "[stack]", |f| f.iter().any(|x| x == "gd")),
            name: m.path.clone(),
            kind,
            madvise: flags
                .get(&m.start)
                .map(|f| advice_of(f))
                .unwrap_or_default(),
            shm_inode: (m.shared && !file_backed).then_some(m.inode),
            shm_size: if m.shared && !file_backed {
                let p = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
                std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len()
            } else {
                0
            },
        });
        // Shared file mappings live in the file; nothing to write.
        if file_backed && m.shared {
            continue;
        }
        let npages = ((m.end - m.start) / ps) as usize;
        let mut entries = vec![0u8; npages * 8];
        pagemap
            .read_exact_at(&mut entries, m.start / ps * 8)
            .map_err(|e| Error::io(&pagemap_path, e))?;
        let entries: Vec<u64> = entries
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        for (first, n) in populated_runs(&entries, file_backed) {
            todo.push((m.start + first as u64 * ps, n as u64, m.read));
        }
    }
    Ok((vmas, vdso, todo))
}

/// Runs (first page index, number of pages) of a VMA's pagemap entries
/// that the image must carry: present or swapped pages, and in a private
/// file mapping only the COW-ed (anonymous) ones, which differ from the file.
fn populated_runs(pagemap: &[u64], file_backed: bool) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut run_start: Option<usize> = None;
    for i in 0..=pagemap.len() {
        let want = pagemap.get(i).is_some_and(|&e| {
            let populated = e & (PM_PRESENT | PM_SWAP) != 0;
            populated && (!file_backed || e & PM_FILE == 0 || e & PM_SWAP != 0)
        });
        match (want, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - s));
                run_start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Plans the copy: runs split to at most `batch` bytes, grouped into
/// batches (readable ones together, one process_vm_readv of many ranges
/// and one sequential write each; unreadable ones alone), and the page
/// runs of the pages file from `offset` on, merged where contiguous in
/// memory and file.
fn plan_copy(todo: &[Todo], ps: u64, batch: usize, offset: u64) -> (Vec<Batch>, Vec<PageRun>) {
    let mut pieces: Vec<(u64, usize, bool)> = Vec::new();
    for &(addr, pages, readable) in todo {
        let mut a = addr;
        let mut left = (pages * ps) as usize;
        while left > 0 {
            let n = left.min(batch);
            pieces.push((a, n, readable));
            a += n as u64;
            left -= n;
        }
    }
    let mut batches: Vec<Batch> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        if !pieces[i].2 {
            batches.push((vec![(pieces[i].0, pieces[i].1)], pieces[i].1, false));
            i += 1;
            continue;
        }
        let mut ranges = Vec::new();
        let mut filled = 0usize;
        while i < pieces.len() && pieces[i].2 && filled + pieces[i].1 <= batch {
            ranges.push((pieces[i].0, pieces[i].1));
            filled += pieces[i].1;
            i += 1;
        }
        batches.push((ranges, filled, true));
    }
    let mut runs: Vec<PageRun> = Vec::new();
    let mut off = offset;
    for (ranges, _, _) in &batches {
        for &(addr, len) in ranges {
            match runs.last_mut() {
                Some(last)
                    if last.addr + last.pages * ps == addr
                        && last.offset + last.pages * ps == off =>
                {
                    last.pages += len as u64 / ps;
                }
                _ => runs.push(PageRun {
                    addr,
                    pages: len as u64 / ps,
                    offset: off,
                }),
            }
            off += len as u64;
        }
    }
    (batches, runs)
}

/// Copies the batches: a reader thread fills buffers (process_vm_readv)
/// while this thread writes the previous one, so reading and writing overlap.
fn copy_batches(pid: i32, batches: &[Batch], out: &mut PagesWriter) -> Result<()> {
    let mem = Mem::open(pid)?;
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<(Vec<u8>, usize)>>(4);
    for _ in 0..4 {
        let _ = free_tx.send(vec![0u8; BATCH]);
    }
    std::thread::scope(|scope| -> Result<()> {
        // Owned by this closure, so that they are dropped when it returns,
        // early on a failed write too (ENOSPC): the reader then sees both
        // channels closed and ends, instead of waiting for a buffer forever
        // while the scope waits for it.
        let (free_tx, full_rx) = (free_tx, full_rx);
        let mem = &mem;
        scope.spawn(move || {
            for (ranges, filled, readable) in batches {
                let Ok(mut buf) = free_rx.recv() else {
                    return;
                };
                let r = read_batch(pid, mem, ranges, &mut buf[..*filled], *readable)
                    .map(|()| (buf, *filled));
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
            }
        });
        for _ in 0..batches.len() {
            let (buf, filled) = full_rx.recv().map_err(|_| Error::Unsupported {
                pid,
                what: "page reader thread ended early".into(),
            })??;
            out.write(&buf[..filled])?;
            let _ = free_tx.send(buf);
        }
        Ok(())
    })
}

/// Remote ranges, their total length, and whether process_vm_readv can read them.
type Batch = (Vec<(u64, usize)>, usize, bool);

/// Reads one batch: many ranges with one process_vm_readv, falling back to
/// /proc/PID/mem for what it cannot read (PROT_NONE, or a racing change).
fn read_batch(
    pid: i32,
    mem: &Mem,
    ranges: &[(u64, usize)],
    buf: &mut [u8],
    readable: bool,
) -> Result<()> {
    let got = if readable {
        ptrace::vm_readv(pid, ranges, buf)?
    } else {
        0
    };
    if got < buf.len() {
        let mut off = 0usize;
        for &(addr, len) in ranges {
            if off + len > got {
                let skip = got.saturating_sub(off);
                mem.read(addr + skip as u64, &mut buf[off + skip..off + len])?;
            }
            off += len;
        }
    }
    Ok(())
}

/// Creates every VMA of the image in the (emptied) target by injected
/// mmap, opening files inside the target so maps show the same paths.
pub fn restore_vmas(
    inj: &mut Injector,
    scratch: &Scratch,
    ns_pid: i32,
    img: &MemoryImage,
    shm: &mut ShmTable,
) -> Result<()> {
    for v in &img.vmas {
        if let Some(ino) = v.shm_inode {
            shm.map(inj, scratch, ns_pid, v, ino)?;
            continue;
        }
        let len = v.end - v.start;
        let share = if v.shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        let mut flags = (share | libc::MAP_FIXED) as u64;
        if v.growsdown {
            flags |= libc::MAP_GROWSDOWN as u64;
        }
        match &v.kind {
            VmaKind::Anon => {
                flags |= libc::MAP_ANONYMOUS as u64;
                let u64max = u64::MAX;
                inj.syscall(
                    "mmap(anon)",
                    libc::SYS_mmap,
                    &[v.start, len, v.prot as u64, flags, u64max, 0],
                )?;
            }
            VmaKind::File { path, offset, .. } => {
                let oflags = if v.shared && v.prot & libc::PROT_WRITE as u32 != 0 {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                };
                // O_NONBLOCK: opening a FIFO an image names must not wait
                // (check_files refused anything but a regular file already).
                let fd = sys::open_image_path(
                    inj,
                    scratch,
                    ns_pid,
                    "mapped file",
                    path,
                    oflags | libc::O_CLOEXEC | libc::O_NONBLOCK,
                    0,
                )?;
                let r = inj.syscall(
                    "mmap(file)",
                    libc::SYS_mmap,
                    &[v.start, len, v.prot as u64, flags, fd, *offset],
                );
                inj.syscall("close", libc::SYS_close, &[fd])?;
                r?;
            }
        }
    }
    Ok(())
}

/// Refuses an image whose mapped files changed since the dump (size or
/// content), or that names anything but a regular file, looked up under the
/// root of `pid` (the stub: where restore will open them) the way restore
/// opens them (inside that root, no magic links), before anything is touched.
/// Reads at most the recorded size of each file.
pub fn check_files(root: &std::fs::File, ns_pid: i32, img: &MemoryImage) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for v in &img.vmas {
        let VmaKind::File {
            path, size, crc32, ..
        } = &v.kind
        else {
            continue;
        };
        if !seen.insert(path.clone()) {
            continue;
        }
        let refuse = |why: String| Error::restore(ns_pid, format!("mapped file {path:?}: {why}"));
        sys::check_image_path(path).map_err(|w| refuse(w.to_string()))?;
        let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK;
        let mut file = match sys::open_below(root, path, flags) {
            Ok(f) => f,
            Err(nix::errno::Errno::ENOENT) => {
                return Err(Error::restore(
                    ns_pid,
                    format!(
                        "mapped file {path} is not in the container's rootfs: restore onto a \
                         bundle holding the files the image maps (a copy of the checkpointed \
                         container's bundle)"
                    ),
                ))
            }
            Err(e) => return Err(refuse(sys::why_not_below(e))),
        };
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.file_type().is_file() {
            return Err(refuse(format!(
                "not a regular file ({}): only regular files are mapped again",
                file_kind(&meta)
            )));
        }
        if meta.len() != *size {
            return Err(Error::restore(
                ns_pid,
                format!(
                    "mapped file {path} changed since the dump (size {size} → {})",
                    meta.len()
                ),
            ));
        }
        let now_crc = crc_of(&mut file, *size).map_err(|e| Error::io(path, e))?;
        if now_crc != *crc32 {
            return Err(Error::restore(
                ns_pid,
                format!(
                    "mapped file {path} changed since the dump (size {size}, \
                     CRC-32 {crc32:08x} → {now_crc:08x})"
                ),
            ));
        }
    }
    Ok(())
}

/// What kind of non-regular file `meta` is, for errors.
pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// CRC-32 of exactly `len` bytes of `r` (a shorter file is an error): never
/// reads more than that, whatever the file is.
fn crc_of(r: &mut impl std::io::Read, len: u64) -> std::io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("file ended {left} bytes before its size"),
            ));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize())
}

/// Repeats the VMAs' madvise advice (THP, fork and dump behaviour, KSM).
pub fn restore_advice(inj: &mut Injector, img: &MemoryImage) -> Result<()> {
    for v in &img.vmas {
        for &advice in &v.madvise {
            inj.syscall(
                "madvise",
                libc::SYS_madvise,
                &[v.start, v.end - v.start, advice as u64],
            )?;
        }
    }
    Ok(())
}

/// Shared anonymous objects recreated so far in the tree. The first process
/// mapping one creates it (MAP_SHARED|MAP_ANONYMOUS) and keeps an fd of the
/// object from /proc/self/map_files; every other process maps that fd.
pub struct ShmTable {
    /// shmem inode → (ns pid of the creator, spare fd there).
    made: std::collections::HashMap<u64, (i32, u64)>,
    /// Lowest spare fd: above every fd number still to be restored.
    spare_min: u64,
}

impl ShmTable {
    pub fn new(spare_min: u64) -> Self {
        ShmTable {
            made: Default::default(),
            spare_min,
        }
    }

    fn map(
        &mut self,
        inj: &mut Injector,
        scratch: &Scratch,
        ns_pid: i32,
        v: &Vma,
        ino: u64,
    ) -> Result<()> {
        let len = v.end - v.start;
        match self.made.get(&ino) {
            None => {
                // memfd objects are memfds again (same name); the rest are
                // plain shared anonymous memory.
                let memfd_name = v
                    .name
                    .strip_prefix("/memfd:")
                    .map(|n| n.strip_suffix(" (deleted)").unwrap_or(n));
                let fd = match memfd_name {
                    Some(name) => {
                        let p = scratch.put_cstr(sys::PATH_OFF, name)?;
                        let fd = inj.syscall(
                            "memfd_create",
                            libc::SYS_memfd_create,
                            &[p, (libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) as u64],
                        )?;
                        inj.syscall("ftruncate", libc::SYS_ftruncate, &[fd, v.shm_size.max(len)])?;
                        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
                        inj.syscall(
                            "mmap(memfd)",
                            libc::SYS_mmap,
                            &[v.start, len, v.prot as u64, flags, fd, 0],
                        )?;
                        fd
                    }
                    None => {
                        let flags =
                            (libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
                        inj.syscall(
                            "mmap(shared anon)",
                            libc::SYS_mmap,
                            &[v.start, len, v.prot as u64, flags, u64::MAX, 0],
                        )?;
                        let path = format!("/proc/self/map_files/{:x}-{:x}", v.start, v.end);
                        sys::open_in(inj, scratch, &path, libc::O_RDWR | libc::O_CLOEXEC, 0)?
                    }
                };
                let spare = inj.syscall(
                    "fcntl(F_DUPFD_CLOEXEC)",
                    libc::SYS_fcntl,
                    &[fd, libc::F_DUPFD_CLOEXEC as u64, self.spare_min],
                )?;
                inj.syscall("close", libc::SYS_close, &[fd])?;
                self.made.insert(ino, (ns_pid, spare));
            }
            Some(&(owner, spare)) => {
                let fd = sys::get_fd(inj, ns_pid, owner, spare)?;
                let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
                let r = inj.syscall(
                    "mmap(shared object)",
                    libc::SYS_mmap,
                    &[v.start, len, v.prot as u64, flags, fd, 0],
                );
                inj.syscall("close", libc::SYS_close, &[fd])?;
                r?;
            }
        }
        Ok(())
    }

    /// The object with shmem inode `ino`, if some process maps it: (owner ns
    /// pid, fd there).
    pub fn object(&self, ino: u64) -> Option<(i32, u64)> {
        self.made.get(&ino).copied()
    }

    /// Spare fds to close once every process has its memory and files.
    pub fn spares(&self) -> Vec<(i32, u64)> {
        self.made.values().copied().collect()
    }
}

/// Writes the image's pages into the target, one call per run:
/// process_vm_writev (one copy, pages pinned in batches) where the memory is
/// writable, /proc/PID/mem (FOLL_FORCE) for read-only and PROT_NONE pages.
pub fn restore_pages(
    pid: i32,
    mem: &Mem,
    img: &MemoryImage,
    pages: &[u8],
    file: &str,
) -> Result<()> {
    let ps = crate::page_size();
    // (address, bytes) per run, checked against the file first.
    let mut work: Vec<(u64, &[u8])> = Vec::with_capacity(img.runs.len());
    for r in &img.runs {
        let len = r.pages * ps;
        let data = pages
            .get(r.offset as usize..(r.offset + len) as usize)
            .ok_or_else(|| {
                Error::image(
                    file,
                    format!("page run at {:#x} lies beyond the file", r.addr),
                )
            })?;
        // Large runs in pieces, so that two writers can share them.
        for (i, chunk) in data.chunks(PARALLEL_CHUNK).enumerate() {
            work.push((r.addr + (i * PARALLEL_CHUNK) as u64, chunk));
        }
    }
    let write = |items: &[(u64, &[u8])]| -> Result<()> {
        for &(addr, data) in items {
            let done = ptrace::vm_writev(pid, addr, data);
            if done < data.len() {
                mem.write(addr + done as u64, &data[done..])?;
            }
        }
        Ok(())
    };
    let total: usize = work.iter().map(|w| w.1.len()).sum();
    if total < 2 * PARALLEL_CHUNK {
        return write(&work);
    }
    // First touch of the target's pages is the cost (page faults): two
    // writers fault in parallel. The helper may run on any CPU (the caller
    // is pinned for injection).
    let mid = {
        let mut acc = 0usize;
        work.iter()
            .position(|w| {
                acc += w.1.len();
                acc >= total / 2
            })
            .map_or(work.len(), |i| i + 1)
    };
    let (a, b) = work.split_at(mid);
    std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            crate::boost::unpin_current();
            write(b)
        });
        let mine = write(a);
        let theirs = helper
            .join()
            .unwrap_or_else(|_| Err(Error::restore(0, "page writer thread panicked")));
        mine.and(theirs)
    })
}

/// `struct prctl_mm_map`.
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// Sets code/data/brk/stack/arg/env/auxv and the exe link in one PR_SET_MM_MAP
/// (the single-field forms need CAP_SYS_RESOURCE). Call after the stub's
/// own executable is unmapped, or exe_fd fails with EBUSY.
pub fn restore_mm(inj: &mut Injector, scratch: &Scratch, ns_pid: i32, mm: &MmFields) -> Result<()> {
    let exe_fd = sys::open_image_path(
        inj,
        scratch,
        ns_pid,
        "executable",
        &mm.exe,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        0,
    )?;
    let auxv_bytes: Vec<u8> = mm.auxv.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let auxv_addr = scratch.put(1024, &auxv_bytes)?;
    let map = PrctlMmMap {
        start_code: mm.start_code,
        end_code: mm.end_code,
        start_data: mm.start_data,
        end_data: mm.end_data,
        start_brk: mm.start_brk,
        brk: mm.brk,
        start_stack: mm.start_stack,
        arg_start: mm.arg_start,
        arg_end: mm.arg_end,
        env_start: mm.env_start,
        env_end: mm.env_end,
        auxv: auxv_addr,
        auxv_size: auxv_bytes.len() as u32,
        exe_fd: exe_fd as u32,
    };
    // SAFETY: PrctlMmMap is repr(C) plain data.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            &map as *const PrctlMmMap as *const u8,
            std::mem::size_of::<PrctlMmMap>(),
        )
    };
    let addr = scratch.put(0, bytes)?;
    let r = inj.syscall(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[
            libc::PR_SET_MM as u64,
            libc::PR_SET_MM_MAP as u64,
            addr,
            bytes.len() as u64,
        ],
    );
    inj.syscall("close", libc::SYS_close, &[exe_fd])?;
    r.map(drop)
}

/// Maps this kernel's vDSO at the dumped [vvar] start, refusing an image
/// whose vDSO differs from this kernel's (no trampolines yet).
pub fn restore_vdso(
    inj: &mut Injector,
    pid: i32,
    place: &VdsoPlace,
    dumped: Option<&VdsoFingerprint>,
) -> Result<()> {
    let ours = vdso_fingerprint(
        std::process::id() as i32,
        &proc::parse_maps(std::process::id() as i32)?,
    )?;
    if dumped != ours.as_ref() {
        return Err(Error::Vdso(format!(
            "the image's vDSO ({dumped:?}) differs from this kernel's ({ours:?}); cannot restore without trampolines"
        )));
    }
    const ARCH_MAP_VDSO_64: u64 = 0x2003;
    inj.syscall(
        "arch_prctl(ARCH_MAP_VDSO_64)",
        libc::SYS_arch_prctl,
        &[ARCH_MAP_VDSO_64, place.vvar_start],
    )?;
    // If the range was busy the kernel silently maps it elsewhere: check.
    let maps = proc::parse_maps(pid)?;
    let vdso = maps.iter().find(|m| m.path == "[vdso]");
    let vvar = maps.iter().find(|m| m.path == "[vvar]");
    match (vvar, vdso) {
        (Some(vv), Some(vd)) if vv.start == place.vvar_start && vd.start == place.vdso_start => {
            Ok(())
        }
        _ => Err(Error::Vdso(format!(
            "vDSO landed at {:?}/{:?}, wanted [vvar] at {:#x} and [vdso] at {:#x}",
            vvar.map(|m| m.start),
            vdso.map(|m| m.start),
            place.vvar_start,
            place.vdso_start
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: u64 = 4096;

    #[test]
    fn populated_runs_of_anonymous_memory() {
        let p = PM_PRESENT;
        let s = PM_SWAP;
        let entries = [0, p, p, 0, s, p, 0, p];
        assert_eq!(populated_runs(&entries, false), [(1, 2), (4, 2), (7, 1)]);
        assert!(populated_runs(&[0, 0], false).is_empty());
        assert!(populated_runs(&[], false).is_empty());
    }

    #[test]
    fn private_file_mapping_carries_only_cowed_pages() {
        let file_page = PM_PRESENT | PM_FILE;
        let cowed = PM_PRESENT;
        let swapped = PM_SWAP | PM_FILE;
        let entries = [file_page, cowed, cowed, file_page, swapped];
        assert_eq!(populated_runs(&entries, true), [(1, 2), (4, 1)]);
        // The same pages of an anonymous VMA are all carried.
        assert_eq!(populated_runs(&entries, false), [(0, 5)]);
    }

    #[test]
    fn copy_plan_batches_readable_runs_and_merges_page_runs() {
        let todo = [(0x1000, 2, true), (0x3000, 1, true), (0x9000, 1, false)];
        let (batches, runs) = plan_copy(&todo, PS, 16 * PS as usize, 100 * PS);
        // Readable runs share one batch; the unreadable one is alone.
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[0],
            (
                vec![(0x1000, 2 * PS as usize), (0x3000, PS as usize)],
                3 * PS as usize,
                true
            )
        );
        assert_eq!(
            batches[1],
            (vec![(0x9000, PS as usize)], PS as usize, false)
        );
        // 0x1000..0x3000 and 0x3000 are contiguous in memory and file.
        assert_eq!(
            runs,
            [
                PageRun {
                    addr: 0x1000,
                    pages: 3,
                    offset: 100 * PS
                },
                PageRun {
                    addr: 0x9000,
                    pages: 1,
                    offset: 103 * PS
                },
            ]
        );
    }

    #[test]
    fn copy_plan_splits_runs_at_the_batch_size() {
        let todo = [(0x10000, 5, true)];
        let (batches, runs) = plan_copy(&todo, PS, 2 * PS as usize, 0);
        let sizes: Vec<usize> = batches.iter().map(|b| b.1).collect();
        assert_eq!(sizes, [2 * PS as usize, 2 * PS as usize, PS as usize]);
        assert!(batches.iter().all(|b| b.1 <= 2 * PS as usize));
        // Split pieces are still one run in the pages file.
        assert_eq!(
            runs,
            [PageRun {
                addr: 0x10000,
                pages: 5,
                offset: 0
            }]
        );
        let total: u64 = runs.iter().map(|r| r.pages).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn vdso_names() {
        assert!(is_vdso_name("[vdso]"));
        assert!(is_vdso_name("[vvar]"));
        assert!(is_vdso_name("[vvar_vclock]"));
        assert!(!is_vdso_name("[vsyscall]"));
        assert!(!is_vdso_name("/usr/lib/vdso.so"));
    }
}
