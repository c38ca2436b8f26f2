//! Readers for /proc/PID files. Small, strict parsers: a line we do not
//! understand is an error naming the file, not a silent default.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub fn read_string(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

pub fn read_link(path: impl AsRef<Path>) -> Result<PathBuf> {
    let path = path.as_ref();
    std::fs::read_link(path).map_err(|e| Error::io(path, e))
}

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub offset: u64,
    pub dev: String,
    pub inode: u64,
    pub path: String,
}

pub fn parse_maps(pid: i32) -> Result<Vec<MapsEntry>> {
    let path = format!("/proc/{pid}/maps");
    parse_maps_text(&path, &read_string(&path)?)
}

pub fn parse_maps_text(path: &str, text: &str) -> Result<Vec<MapsEntry>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let bad = || Error::parse(path, format!("bad maps line {line:?}"));
        let mut it = line.splitn(6, ' ');
        let range = it.next().ok_or_else(bad)?;
        let perms = it.next().ok_or_else(bad)?.as_bytes();
        let offset = it.next().ok_or_else(bad)?;
        let dev = it.next().ok_or_else(bad)?;
        let inode = it.next().ok_or_else(bad)?;
        let name = it.next().unwrap_or("").trim_start();
        let (s, e) = range.split_once('-').ok_or_else(bad)?;
        if perms.len() != 4 {
            return Err(bad());
        }
        out.push(MapsEntry {
            start: u64::from_str_radix(s, 16).map_err(|_| bad())?,
            end: u64::from_str_radix(e, 16).map_err(|_| bad())?,
            read: perms[0] == b'r',
            write: perms[1] == b'w',
            exec: perms[2] == b'x',
            shared: perms[3] == b's',
            offset: u64::from_str_radix(offset, 16).map_err(|_| bad())?,
            dev: dev.to_string(),
            inode: inode.parse().map_err(|_| bad())?,
            path: name.to_string(),
        });
    }
    Ok(out)
}

/// Fields of /proc/PID/stat after the `(comm)`; `field(n)` uses proc(5) numbering.
pub struct Stat {
    rest: Vec<String>,
    path: String,
}

impl Stat {
    pub fn read(pid: i32) -> Result<Self> {
        let path = format!("/proc/{pid}/stat");
        let text = read_string(&path)?;
        let close = text
            .rfind(')')
            .ok_or_else(|| Error::parse(&path, "no ')' after comm"))?;
        let rest = text[close + 1..]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(Stat { rest, path })
    }

    /// Field number `n` as in proc(5) (1 = pid, 2 = comm, 3 = state ...).
    pub fn field(&self, n: usize) -> Result<u64> {
        let s = self
            .rest
            .get(n.wrapping_sub(3))
            .ok_or_else(|| Error::parse(&self.path, format!("missing field {n}")))?;
        s.parse::<i64>()
            .map(|v| v as u64)
            .or_else(|_| s.parse::<u64>())
            .map_err(|_| Error::parse(&self.path, format!("field {n} is {s:?}")))
    }
}

/// /proc/PID/status (or task/TID/status) as key → value.
pub struct Status {
    pub path: String,
    pub fields: Vec<(String, String)>,
}

impl Status {
    pub fn read(path: String) -> Result<Self> {
        let text = read_string(&path)?;
        let fields = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        Ok(Status { path, fields })
    }

    pub fn of_pid(pid: i32) -> Result<Self> {
        Self::read(format!("/proc/{pid}/status"))
    }

    pub fn get(&self, key: &str) -> Result<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::parse(&self.path, format!("no {key} field")))
    }

    pub fn ints(&self, key: &str) -> Result<Vec<i64>> {
        self.get(key)?
            .split_whitespace()
            .map(|s| {
                s.parse()
                    .map_err(|_| Error::parse(&self.path, format!("{key}: {s:?}")))
            })
            .collect()
    }

    pub fn hex(&self, key: &str) -> Result<u64> {
        let v = self.get(key)?;
        u64::from_str_radix(v, 16).map_err(|_| Error::parse(&self.path, format!("{key}: {v:?}")))
    }

    pub fn octal(&self, key: &str) -> Result<u32> {
        let v = self.get(key)?;
        u32::from_str_radix(v, 8).map_err(|_| Error::parse(&self.path, format!("{key}: {v:?}")))
    }

    /// The innermost pid-namespace id (last NSpid entry).
    pub fn ns_pid(&self) -> Result<i32> {
        self.ints("NSpid")?
            .last()
            .map(|&v| v as i32)
            .ok_or_else(|| Error::parse(&self.path, "empty NSpid"))
    }
}

/// Thread ids of a process, sorted (the thread-group leader first).
pub fn tasks(pid: i32) -> Result<Vec<i32>> {
    let path = format!("/proc/{pid}/task");
    let mut out: Vec<i32> = std::fs::read_dir(&path)
        .map_err(|e| Error::io(&path, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    if let Some(i) = out.iter().position(|&t| t == pid) {
        out.remove(i);
        out.insert(0, pid);
    }
    Ok(out)
}

/// Children pids (host view) of every thread of `pid`.
pub fn children(pid: i32) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for tid in tasks(pid)? {
        let path = format!("/proc/{pid}/task/{tid}/children");
        match std::fs::read_to_string(&path) {
            Ok(s) => out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok())),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(out)
}

/// `root` and all its descendants (host pids), parents before children.
pub fn tree(root: i32) -> Result<Vec<i32>> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i])?;
        out.extend(kids);
        i += 1;
    }
    Ok(out)
}

/// /proc/PID/fdinfo/FD as key → value.
pub fn fdinfo(pid: i32, fd: i32) -> Result<Status> {
    Status::read(format!("/proc/{pid}/fdinfo/{fd}"))
}

/// Open fd numbers of `pid`, sorted.
pub fn fds(pid: i32) -> Result<Vec<i32>> {
    let path = format!("/proc/{pid}/fd");
    let mut out: Vec<i32> = std::fs::read_dir(&path)
        .map_err(|e| Error::io(&path, e))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_line_with_spaces_and_specials() {
        let t = "00400000-00401000 r-xp 00001000 fd:01 1234                       /usr/bin/a b (deleted)\n\
                 7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]\n\
                 7ffd3000-7ffd4000 ---s 00000000 00:00 0 \n";
        let m = parse_maps_text("maps", t).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].path, "/usr/bin/a b (deleted)");
        assert!(m[0].exec && !m[0].write && !m[0].shared);
        assert_eq!(m[0].offset, 0x1000);
        assert_eq!(m[1].path, "[stack]");
        assert!(m[2].shared && !m[2].read);
        assert_eq!(m[2].path, "");
        assert!(parse_maps_text("maps", "zz-1 r--p").is_err());
    }
}
