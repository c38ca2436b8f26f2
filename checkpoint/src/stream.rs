//! Where a dump goes: a [`Sink`] takes the image as a sequence of named
//! files, each written front to back, one at a time, the inventory last.
//! [`DirSink`] makes them files of an image directory (0600, fsynced); a
//! caller's sink can send them elsewhere — `godwit migrate` encrypts them onto
//! a socket, so the pages go from the frozen process to the wire once, with
//! no image directory in between.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Receives the files of an image in the order the dumper writes them:
/// `begin(name)`, any number of `write`s, `end()`; then the next file. The
/// inventory (`inventory.json`) comes last, then `complete()`.
pub trait Sink {
    /// Starts file `name` (a plain name, no `/`).
    fn begin(&mut self, name: &str) -> Result<()>;
    /// Appends to the current file.
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Ends the current file; for a directory, it is durable when this returns.
    fn end(&mut self) -> Result<()>;
    /// Every file has been written (the inventory last).
    fn complete(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The image directory of `godwit checkpoint`: files 0600, each fsynced at
/// its end, the directory fsynced once complete.
pub struct DirSink {
    dir: PathBuf,
    cur: Option<(PathBuf, File)>,
}

impl DirSink {
    /// Creates `dir` (0700), or takes it if it exists and is empty.
    pub fn create(dir: &Path) -> Result<Self> {
        crate::image::create_dir(dir)?;
        Ok(DirSink {
            dir: dir.to_path_buf(),
            cur: None,
        })
    }

    fn current(&mut self) -> Result<&mut (PathBuf, File)> {
        let dir = &self.dir;
        self.cur
            .as_mut()
            .ok_or_else(|| Error::image(dir, "image write outside of a file (dumper bug)"))
    }
}

impl Sink for DirSink {
    fn begin(&mut self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(Error::image(
                self.dir.join(name),
                "image file names must be plain names",
            ));
        }
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        self.cur = Some((path, file));
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        let (path, file) = self.current()?;
        file.write_all(data).map_err(|e| Error::io(&*path, e))
    }

    fn end(&mut self) -> Result<()> {
        let (path, file) = self.current()?;
        file.sync_all().map_err(|e| Error::io(&*path, e))?;
        self.cur = None;
        Ok(())
    }

    fn complete(&mut self) -> Result<()> {
        let d = File::open(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        d.sync_all().map_err(|e| Error::io(&self.dir, e))
    }
}

/// A sink seen as `io::Write` (for the zstd encoder of compressed pages).
pub(crate) struct SinkWriter<'a>(pub &'a mut dyn Sink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_sink_writes_plain_named_files_and_refuses_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("img");
        let mut s = DirSink::create(&dir).unwrap();
        s.begin("a.json").unwrap();
        s.write(b"12").unwrap();
        s.write(b"3").unwrap();
        s.end().unwrap();
        s.complete().unwrap();
        assert_eq!(std::fs::read(dir.join("a.json")).unwrap(), b"123");
        assert!(s.begin("../x").is_err());
        assert!(s.begin(".hidden").is_err());
        assert!(s.write(b"x").is_err(), "a write outside a file is refused");
    }
}
