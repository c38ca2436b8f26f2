//! The cgroup freezer: the one implementation godwit uses, for the dumper's
//! freeze while it seizes threads, the runtime's checkpoint (tmpfs read
//! while frozen, a paused container frozen again), the dump guard, and
//! `pause`/`resume`.
//!
//! v1 (`freezer.state`, on hybrid hosts the `freezer` hierarchy) and v2
//! (`cgroup.freeze`). [`Freezer::freeze`] returns only once the kernel
//! reports the whole cgroup frozen: v1 `freezer.state` reads `FROZEN` (not
//! `FREEZING`; the request is repeated meanwhile, as runc does), v2
//! `cgroup.events` has `frozen 1`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a freeze may take before it is given up (and thawed again).
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which freezer interface a cgroup directory has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `freezer.state`: THAWED, FREEZING, FROZEN.
    V1,
    /// `cgroup.freeze` (0/1), with `frozen 0/1` in `cgroup.events`.
    V2,
}

/// A cgroup's freezer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freezer {
    dir: PathBuf,
    version: Version,
}

impl Freezer {
    /// The freezer of the cgroup directory `dir` (v1 freezer or v2 cgroup).
    pub fn at(dir: &Path) -> Result<Freezer> {
        let version = if dir.join("freezer.state").exists() {
            Version::V1
        } else if dir.join("cgroup.freeze").exists() {
            Version::V2
        } else {
            return Err(Error::Freezer {
                dir: dir.to_path_buf(),
                what: "neither freezer.state nor cgroup.freeze here: not a freezable cgroup".into(),
            });
        };
        Ok(Freezer {
            dir: dir.to_path_buf(),
            version,
        })
    }

    /// The freezer of `pid`'s cgroup: the v1 freezer hierarchy where there is
    /// one (on hybrid hosts, what libcgroups' manager uses), else the v2
    /// cgroup. None when the process has gone or its cgroup cannot freeze
    /// (the v2 root cgroup has no `cgroup.freeze`).
    pub fn of_pid(pid: i32) -> Option<Freezer> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let unified = Path::new("/sys/fs/cgroup/unified").is_dir();
        Freezer::at(&freezer_dir(&text, unified)?).ok()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn version(&self) -> Version {
        self.version
    }

    fn control(&self) -> PathBuf {
        match self.version {
            Version::V1 => self.dir.join("freezer.state"),
            Version::V2 => self.dir.join("cgroup.freeze"),
        }
    }

    fn write(&self, frozen: bool) -> Result<()> {
        let file = self.control();
        let value = match (self.version, frozen) {
            (Version::V1, true) => "FROZEN",
            (Version::V1, false) => "THAWED",
            (Version::V2, true) => "1",
            (Version::V2, false) => "0",
        };
        std::fs::write(&file, value).map_err(|e| Error::io(&file, e))
    }

    /// Asks the kernel to freeze the cgroup without waiting: for tasks that
    /// are in ptrace stops and enter the freezer only once released.
    pub fn request_freeze(&self) -> Result<()> {
        self.write(true)
    }

    /// Freezes the cgroup and waits until every task in it is frozen. A
    /// freeze that does not take within [`FREEZE_TIMEOUT`] is undone (thawed)
    /// and reported.
    pub fn freeze(&self) -> Result<()> {
        self.write(true)?;
        let deadline = Instant::now() + FREEZE_TIMEOUT;
        loop {
            if self.is_frozen()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.thaw();
                return Err(Error::Freezer {
                    dir: self.dir.clone(),
                    what: format!(
                        "the cgroup did not freeze within {} s (a task stuck in the kernel?); \
                         it was thawed again",
                        FREEZE_TIMEOUT.as_secs()
                    ),
                });
            }
            if self.version == Version::V1 {
                // FREEZING can stall on a task that forks meanwhile: ask again.
                self.write(true)?;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Thaws the cgroup (takes effect at once).
    pub fn thaw(&self) -> Result<()> {
        self.write(false)
    }

    /// Freezes or thaws: [`Freezer::freeze`] or [`Freezer::thaw`].
    pub fn set(&self, frozen: bool) -> Result<()> {
        if frozen {
            self.freeze()
        } else {
            self.thaw()
        }
    }

    /// Whether the kernel reports every task of the cgroup frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        let file = match self.version {
            Version::V1 => self.dir.join("freezer.state"),
            Version::V2 => self.dir.join("cgroup.events"),
        };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        Ok(reports_frozen(self.version, &text))
    }

    /// Freezes the cgroup (waiting) and thaws it again when the guard drops.
    pub fn frozen(&self) -> Result<ThawOnDrop<'_>> {
        self.freeze()?;
        Ok(ThawOnDrop(self))
    }
}

/// A frozen cgroup, thawed when dropped.
pub struct ThawOnDrop<'a>(&'a Freezer);

impl Drop for ThawOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.thaw() {
            tracing::error!(cgroup = %self.0.dir.display(), error = %e, "cannot thaw cgroup");
        }
    }
}

/// Whether a freezer's state file (v1 `freezer.state`, v2 `cgroup.events`)
/// says the cgroup is frozen.
pub fn reports_frozen(version: Version, text: &str) -> bool {
    match version {
        Version::V1 => text.trim() == "FROZEN",
        Version::V2 => text.lines().any(|l| l.trim() == "frozen 1"),
    }
}

/// The freezer directory named by a `/proc/PID/cgroup` text: the v1
/// `freezer` controller's where there is one, else the v2 (`0::`) path under
/// `/sys/fs/cgroup` (`/sys/fs/cgroup/unified` on a hybrid host, `unified`).
pub fn freezer_dir(proc_cgroup: &str, unified: bool) -> Option<PathBuf> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "freezer") {
            return Some(Path::new("/sys/fs/cgroup/freezer").join(rel));
        }
        if controllers.is_empty() {
            let base = if unified {
                "/sys/fs/cgroup/unified"
            } else {
                "/sys/fs/cgroup"
            };
            v2 = Some(Path::new(base).join(rel));
        }
    }
    v2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_freezer_wins_on_a_hybrid_host() {
        let text = "12:freezer:/godwit/c1\n5:cpu,cpuacct:/godwit/c1\n0::/user.slice\n";
        assert_eq!(
            freezer_dir(text, true),
            Some(PathBuf::from("/sys/fs/cgroup/freezer/godwit/c1"))
        );
    }

    #[test]
    fn v2_path_on_unified_and_hybrid_hosts() {
        let text = "0::/godwit/c1\n";
        assert_eq!(
            freezer_dir(text, false),
            Some(PathBuf::from("/sys/fs/cgroup/godwit/c1"))
        );
        assert_eq!(
            freezer_dir(text, true),
            Some(PathBuf::from("/sys/fs/cgroup/unified/godwit/c1"))
        );
        assert_eq!(freezer_dir("garbage\n3:cpu:/x\n", false), None);
    }

    #[test]
    fn frozen_only_when_the_kernel_says_so() {
        assert!(reports_frozen(Version::V1, "FROZEN\n"));
        assert!(!reports_frozen(Version::V1, "FREEZING\n"));
        assert!(!reports_frozen(Version::V1, "THAWED\n"));
        assert!(reports_frozen(Version::V2, "populated 1\nfrozen 1\n"));
        assert!(!reports_frozen(Version::V2, "populated 1\nfrozen 0\n"));
    }

    #[test]
    fn freezes_and_thaws_a_fake_v1_cgroup() {
        let dir = std::env::temp_dir().join(format!("godwit-freezer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("freezer.state"), "THAWED\n").unwrap();
        let f = Freezer::at(&dir).unwrap();
        assert_eq!(f.version(), Version::V1);
        {
            // A plain file reads back what was written: FROZEN at once.
            let _frozen = f.frozen().unwrap();
            assert!(f.is_frozen().unwrap());
        }
        assert!(!f.is_frozen().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Freezer::at(&dir).is_err());
    }
}
