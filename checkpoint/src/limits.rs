//! Sane bounds on what an image may ask of the restorer, checked before
//! anything is allocated from its numbers: pids and thread ids, counts,
//! lengths and sizes. An image is input from elsewhere (another host, a
//! shared store): a value out of these bounds is refused with the field it is
//! in, never looped over, allocated or used as an index. Pure functions, no
//! root needed.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::dump::ProcessImage;
use crate::error::{Error, Result};
use crate::image::{FileRef, Inventory};

/// PID_MAX_LIMIT on 64-bit kernels: no pid or tid is larger.
pub const PID_MAX: i32 = 4 * 1024 * 1024;
/// Processes in one image.
pub const MAX_PROCESSES: usize = 65_536;
/// Threads of one process.
pub const MAX_THREADS: usize = 65_536;
/// NR_OPEN: no fd number reaches it.
pub const MAX_FD: i32 = 1 << 20;
/// Mappings of one process (vm.max_map_count is 65530 by default).
pub const MAX_VMAS: usize = 1 << 20;
/// Highest user address + 1 with 4-level paging.
pub const TASK_END: u64 = 0x7fff_ffff_f000;
/// The kernel keeps at most AT_VECTOR_SIZE (52 on x86_64) auxv words.
pub const MAX_AUXV: usize = 64;
/// inventory.json.
pub const MAX_INVENTORY_BYTES: u64 = 64 << 20;
/// One process record (JSON; pipe contents are in it, memfd contents in files of their own).
pub const MAX_RECORD_BYTES: u64 = 1 << 30;

fn field(file: &Path, what: String) -> Error {
    Error::image(file, what)
}

fn check_pid(file: &Path, name: &str, v: i32, zero_ok: bool) -> Result<()> {
    if (zero_ok && v == 0) || (1..=PID_MAX).contains(&v) {
        return Ok(());
    }
    Err(field(
        file,
        format!("field {name}: {v} is not a pid (1..={PID_MAX})"),
    ))
}

/// The inventory's process list: pids and tids in range and unique, counts
/// bounded, one root (ppid 0) whose pid is `root_pid`, every other parent in
/// the image, and no cycle (every process reached from the root). Returns the
/// indexes of the processes parents first.
pub fn check_inventory(file: &Path, inv: &Inventory) -> Result<Vec<usize>> {
    if inv.processes.is_empty() {
        return Err(field(file, "field processes: empty".into()));
    }
    if inv.processes.len() > MAX_PROCESSES {
        return Err(field(
            file,
            format!(
                "field processes: {} entries, more than {MAX_PROCESSES}",
                inv.processes.len()
            ),
        ));
    }
    check_pid(file, "root_pid", inv.root_pid, false)?;
    let mut pids = HashMap::new();
    let mut tids = HashSet::new();
    let mut total_threads = 0usize;
    for (i, p) in inv.processes.iter().enumerate() {
        check_pid(file, &format!("processes[{i}].pid"), p.pid, false)?;
        check_pid(file, &format!("processes[{i}].ppid"), p.ppid, true)?;
        check_pid(file, &format!("processes[{i}].pgid"), p.pgid, true)?;
        check_pid(file, &format!("processes[{i}].sid"), p.sid, true)?;
        if pids.insert(p.pid, i).is_some() {
            return Err(field(
                file,
                format!("field processes[{i}].pid: pid {} appears twice", p.pid),
            ));
        }
        if p.tids.len() > MAX_THREADS {
            return Err(field(
                file,
                format!(
                    "field processes[{i}].tids: {} threads, more than {MAX_THREADS}",
                    p.tids.len()
                ),
            ));
        }
        total_threads += p.tids.len();
        if total_threads > PID_MAX as usize {
            return Err(field(
                file,
                "field tids: more threads than pids exist".into(),
            ));
        }
        for &t in &p.tids {
            check_pid(file, &format!("processes[{i}].tids"), t, false)?;
            if !tids.insert(t) {
                return Err(field(
                    file,
                    format!("field processes[{i}].tids: tid {t} appears twice"),
                ));
            }
        }
        if p.tids.first() != Some(&p.pid) {
            return Err(field(
                file,
                format!(
                    "field processes[{i}].tids: the first thread is not the leader {}",
                    p.pid
                ),
            ));
        }
        if (p.ppid == 0) != (p.pid == inv.root_pid) {
            return Err(field(
                file,
                format!(
                    "field processes[{i}].ppid: {} — only the root {} has none",
                    p.ppid, inv.root_pid
                ),
            ));
        }
        if p.ppid == p.pid {
            return Err(field(
                file,
                format!("field processes[{i}].ppid: pid {} is its own parent", p.pid),
            ));
        }
    }
    let root = *pids
        .get(&inv.root_pid)
        .ok_or_else(|| field(file, format!("field root_pid: no process {}", inv.root_pid)))?;
    // Breadth first from the root over the parent links; a process is
    // visited once, so a cycle leaves processes unreached instead of looping.
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    for (i, p) in inv.processes.iter().enumerate() {
        if i != root {
            if !pids.contains_key(&p.ppid) {
                return Err(field(
                    file,
                    format!(
                        "field processes[{i}].ppid: parent {} of pid {} is not in the image",
                        p.ppid, p.pid
                    ),
                ));
            }
            children.entry(p.ppid).or_default().push(i);
        }
    }
    let mut order = vec![root];
    let mut seen = HashSet::from([root]);
    let mut k = 0;
    while k < order.len() {
        let pid = inv.processes[order[k]].pid;
        let mut kids = children.get(&pid).cloned().unwrap_or_default();
        kids.sort_by_key(|&c| inv.processes[c].pid);
        for c in kids {
            if seen.insert(c) {
                order.push(c);
            }
        }
        k += 1;
    }
    check_zombies(file, inv, &pids, &tids)?;
    if order.len() != inv.processes.len() {
        let lost: Vec<i32> = (0..inv.processes.len())
            .filter(|i| !seen.contains(i))
            .map(|i| inv.processes[i].pid)
            .collect();
        return Err(field(
            file,
            format!(
                "field processes: pids {lost:?} are not reached from the root (a parent cycle)"
            ),
        ));
    }
    Ok(order)
}

/// The zombies: bounded in number, pids in range and taken by nothing else,
/// each the child of a live process of the image, with a wait status a
/// process can end with.
fn check_zombies(
    file: &Path,
    inv: &Inventory,
    pids: &HashMap<i32, usize>,
    tids: &HashSet<i32>,
) -> Result<()> {
    if inv.zombies.len() > MAX_PROCESSES {
        return Err(field(
            file,
            format!(
                "field zombies: {} entries, more than {MAX_PROCESSES}",
                inv.zombies.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, z) in inv.zombies.iter().enumerate() {
        check_pid(file, &format!("zombies[{i}].pid"), z.pid, false)?;
        check_pid(file, &format!("zombies[{i}].ppid"), z.ppid, false)?;
        check_pid(file, &format!("zombies[{i}].pgid"), z.pgid, false)?;
        check_pid(file, &format!("zombies[{i}].sid"), z.sid, false)?;
        if tids.contains(&z.pid) || !seen.insert(z.pid) {
            return Err(field(
                file,
                format!("field zombies[{i}].pid: pid {} appears twice", z.pid),
            ));
        }
        if !pids.contains_key(&z.ppid) {
            return Err(field(
                file,
                format!(
                    "field zombies[{i}].ppid: parent {} of zombie {} is not a process of the image",
                    z.ppid, z.pid
                ),
            ));
        }
        if crate::zombie::ending(z.exit_status).is_none() {
            return Err(field(
                file,
                format!(
                    "field zombies[{i}].exit_status: {:#x} is not a status a process ends with",
                    z.exit_status
                ),
            ));
        }
        if !(0..=64).contains(&z.exit_signal) {
            return Err(field(
                file,
                format!(
                    "field zombies[{i}].exit_signal: {} is not a signal",
                    z.exit_signal
                ),
            ));
        }
    }
    Ok(())
}

/// A file reference's length against a bound, before the file is read.
pub fn check_len(file: &Path, fref: &FileRef, max: u64) -> Result<()> {
    if fref.len > max {
        return Err(field(
            file,
            format!(
                "length {} in the inventory, more than the {max} bytes such a file may have",
                fref.len
            ),
        ));
    }
    Ok(())
}

/// One process record against its inventory entry and the bounds: thread
/// ids, fd numbers, mappings, page runs inside the pages file (no overflow).
pub fn check_process(
    file: &Path,
    ns_pid: i32,
    tids: &[i32],
    img: &ProcessImage,
    pages_len: u64,
    page_size: u64,
) -> Result<()> {
    if img.pid != ns_pid {
        return Err(field(
            file,
            format!("field pid: {} but the inventory says {ns_pid}", img.pid),
        ));
    }
    let img_tids: Vec<i32> = img.threads.iter().map(|t| t.tid).collect();
    if img_tids != tids {
        return Err(field(
            file,
            format!("field threads: tids {img_tids:?}, the inventory says {tids:?}"),
        ));
    }
    let fds = &img.files.fds;
    if fds.len() > MAX_FD as usize {
        return Err(field(
            file,
            format!("field files.fds: {} fds, more than {MAX_FD}", fds.len()),
        ));
    }
    let mut seen = HashSet::new();
    for f in fds {
        if !(0..MAX_FD).contains(&f.fd) {
            return Err(field(
                file,
                format!("field files.fds: fd {} is out of 0..{MAX_FD}", f.fd),
            ));
        }
        if !seen.insert(f.fd) {
            return Err(field(
                file,
                format!("field files.fds: fd {} appears twice", f.fd),
            ));
        }
    }
    let mem = &img.memory;
    if mem.vmas.len() > MAX_VMAS {
        return Err(field(
            file,
            format!(
                "field memory.vmas: {} mappings, more than {MAX_VMAS}",
                mem.vmas.len()
            ),
        ));
    }
    let aligned = |a: u64| a.is_multiple_of(page_size);
    for v in &mem.vmas {
        if !(v.start < v.end && v.end <= TASK_END && aligned(v.start) && aligned(v.end)) {
            return Err(field(
                file,
                format!(
                    "field memory.vmas: mapping {:#x}-{:#x} is not a page-aligned user range",
                    v.start, v.end
                ),
            ));
        }
    }
    if mem.mm.auxv.len() > MAX_AUXV {
        return Err(field(
            file,
            format!(
                "field memory.mm.auxv: {} words, more than {MAX_AUXV}",
                mem.mm.auxv.len()
            ),
        ));
    }
    let mut total = 0u64;
    for r in &mem.runs {
        let bad = || {
            field(
                file,
                format!(
                    "field memory.runs: {} pages at {:#x} (file offset {}) do not fit the \
                     address space or the {pages_len}-byte pages file",
                    r.pages, r.addr, r.offset
                ),
            )
        };
        let len = r.pages.checked_mul(page_size).ok_or_else(bad)?;
        let end = r.addr.checked_add(len).ok_or_else(bad)?;
        let file_end = r.offset.checked_add(len).ok_or_else(bad)?;
        if end > TASK_END || file_end > pages_len || !aligned(r.addr) {
            return Err(bad());
        }
        total = total.checked_add(r.pages).ok_or_else(bad)?;
    }
    if total != mem.pages_total {
        return Err(field(
            file,
            format!(
                "field memory.pages_total: {}, the runs hold {total}",
                mem.pages_total
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Clocks, FormatVersion, ProcessEntry};

    fn entry(pid: i32, ppid: i32) -> ProcessEntry {
        let fref = |n: &str| FileRef {
            name: n.into(),
            len: 0,
            sha256: String::new(),
        };
        ProcessEntry {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            tids: vec![pid],
            record: fref("r"),
            pages: fref("p"),
            pages_zstd: false,
        }
    }

    fn inv(root: i32, procs: Vec<ProcessEntry>) -> Inventory {
        Inventory {
            format: FormatVersion::CURRENT,
            godwit_version: String::new(),
            arch: String::new(),
            kernel_release: String::new(),
            page_size: 4096,
            vdso: None,
            dumped_at_unix_ns: 0,
            clocks: Clocks::default(),
            root_pid: root,
            processes: procs,
            zombies: Vec::new(),
            extras: Vec::new(),
        }
    }

    fn zombie(pid: i32, ppid: i32, status: i32) -> crate::zombie::ZombieEntry {
        crate::zombie::ZombieEntry {
            pid,
            ppid,
            pgid: ppid,
            sid: ppid,
            exit_status: status,
            exit_signal: libc::SIGCHLD,
        }
    }

    #[test]
    fn zombies_are_children_of_live_processes_with_real_statuses() {
        let mut five = entry(5, 1);
        five.tids = vec![5, 6];
        let mut i = inv(1, vec![entry(1, 0), five]);
        i.zombies = vec![zombie(9, 5, 7 << 8), zombie(10, 1, libc::SIGTERM)];
        assert_eq!(
            check_inventory(Path::new("inventory.json"), &i).expect("valid"),
            vec![0, 1]
        );
        i.zombies = vec![zombie(9, 77, 0)];
        assert!(
            err(&i).contains("zombies[0].ppid: parent 77"),
            "{}",
            err(&i)
        );
        i.zombies = vec![zombie(6, 1, 0)];
        assert!(err(&i).contains("zombies[0].pid: pid 6 appears twice"));
        i.zombies = vec![zombie(9, 1, 0), zombie(9, 1, 0)];
        assert!(err(&i).contains("zombies[1].pid: pid 9 appears twice"));
        i.zombies = vec![zombie(9, 1, 0x137f)];
        assert!(err(&i).contains("zombies[0].exit_status"));
        i.zombies = vec![zombie(0, 1, 0)];
        assert!(err(&i).contains("zombies[0].pid: 0 is not a pid"));
    }

    fn err(i: &Inventory) -> String {
        check_inventory(Path::new("inventory.json"), i)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_tree_comes_parents_first() {
        let i = inv(1, vec![entry(7, 3), entry(1, 0), entry(3, 1), entry(2, 1)]);
        let order = check_inventory(Path::new("i"), &i).unwrap();
        let pids: Vec<i32> = order.iter().map(|&k| i.processes[k].pid).collect();
        assert_eq!(pids, [1, 2, 3, 7]);
    }

    #[test]
    fn pid_zero_cycles_and_duplicates_are_refused() {
        // A child with pid 0 (looped allocating before).
        assert!(err(&inv(1, vec![entry(1, 0), entry(0, 1)])).contains("is not a pid"));
        // Two processes each the other's parent, beside the root.
        let e = err(&inv(1, vec![entry(1, 0), entry(2, 3), entry(3, 2)]));
        assert!(e.contains("parent cycle"), "{e}");
        let e = err(&inv(1, vec![entry(1, 0), entry(2, 1), entry(2, 1)]));
        assert!(e.contains("appears twice"), "{e}");
        let e = err(&inv(1, vec![entry(1, 0), entry(2, 2)]));
        assert!(e.contains("its own parent"), "{e}");
        let e = err(&inv(1, vec![entry(1, 0), entry(2, 9)]));
        assert!(e.contains("not in the image"), "{e}");
        let e = err(&inv(5, vec![entry(1, 0)]));
        assert!(e.contains("only the root"), "{e}");
        let e = err(&inv(1, vec![entry(1, 0), entry(PID_MAX + 1, 1)]));
        assert!(e.contains("is not a pid"), "{e}");
        let mut big = entry(2, 1);
        big.tids = vec![2; MAX_THREADS + 1];
        assert!(err(&inv(1, vec![entry(1, 0), big])).contains("more than"));
        let mut dup = entry(2, 1);
        dup.tids = vec![2, 1];
        assert!(err(&inv(1, vec![entry(1, 0), dup])).contains("tid 1 appears twice"));
    }

    #[test]
    fn lengths_beyond_their_bound_are_refused() {
        let f = FileRef {
            name: "pages-1.img".into(),
            len: 1 << 50,
            sha256: String::new(),
        };
        let e = check_len(Path::new("pages-1.img"), &f, 1 << 40).unwrap_err();
        assert!(e.to_string().contains("1125899906842624"), "{e}");
    }
}
