//! Fuzzing on stable Rust, as ordinary tests (root: the corpus is a real
//! checkpoint of a real container, made here at run time): a seeded
//! mutation loop over three intakes of untrusted bytes —
//! - archive import (`archive::import_trusted`), on the exported archive;
//! - the dumper's image reader (`godwit_checkpoint::verify_image`: inventory,
//!   bounds, every record, page files), on the image directory;
//! - the spec intake (`bundle::parse_json::<Spec>` and the restore policy's
//!   checks), on the spec the container ran with.
//!
//! Mutations are byte flips, interesting bytes and numbers, truncation,
//! insertion, deletion and splicing; half of them are structure-aware (the
//! digests that guard a mutated file are recomputed, as an attacker would,
//! so the bytes reach the parsers behind the digest checks). Every input runs
//! in its own thread with a time limit: a panic or a hang fails the test,
//! and the input is saved under target/fuzz-failures/ to replay.
//!
//! Each target runs `GODWIT_FUZZ_SECS` seconds (default 20; CI sets 60),
//! from seed `GODWIT_FUZZ_SEED` (default: the time, printed).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use godwit_runtime::archive::{self, ImportLimits, Trust};

/// xorshift64*: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, b'9', b'-', b'"', b'{', b'[', b'/', b'.', b'\\',
];
const INTERESTING_NUMBERS: &[&str] = &[
    "-1",
    "0",
    "1",
    "4096",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "1125899906842624",
    "99999999999999999999999",
    "1e308",
    "-0",
    "null",
    "\"\"",
    "[]",
    "{}",
];

/// One to four mutations of `data`.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            2 if len > 0 => data.truncate(rng.below(len)),
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            4 if len > 1 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                let chunk = data[from..from + n].to_vec();
                let at = rng.below(len);
                data.splice(at..at, chunk);
            }
            5 if len > 1 => {
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(64));
                data.drain(from..from + n);
            }
            _ => {
                // A number (or any JSON scalar) replaced by an interesting one.
                // In a window: scanning a page file whole would be slow.
                let from = rng.below(len.saturating_sub(4096) + 1);
                let to = (from + 4096).min(len);
                let digits: Vec<usize> = (from..to).filter(|&i| data[i].is_ascii_digit()).collect();
                if digits.is_empty() {
                    continue;
                }
                let mut start = digits[rng.below(digits.len())];
                while start > 0 && (data[start - 1].is_ascii_digit() || data[start - 1] == b'-') {
                    start -= 1;
                }
                let mut end = start;
                while end < len && (data[end].is_ascii_digit() || data[end] == b'-') {
                    end += 1;
                }
                let with = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
                data.splice(start..end, with.bytes());
            }
        }
    }
}

fn seconds() -> u64 {
    std::env::var("GODWIT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn seed() -> u64 {
    std::env::var("GODWIT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        | 1
}

fn failures_dir() -> PathBuf {
    let d = repo_dir().join("target/fuzz-failures");
    fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `work` on one input in its own thread: a panic or a run longer
/// than `limit` fails the test, with the input saved (by `save`) to replay.
fn run_one<F>(target: &str, n: u64, limit: Duration, save: impl FnOnce(&Path), work: F)
where
    F: FnOnce() + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        work();
        let _ = tx.send(());
    });
    let outcome = match rx.recv_timeout(limit) {
        Ok(()) => handle.join().map_err(|_| "panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let _ = handle.join();
            Err("panicked")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err("hung"),
    };
    if let Err(what) = outcome {
        let dest = failures_dir().join(format!("{target}-{}-{n}", std::process::id()));
        save(&dest);
        panic!(
            "{target}: input {n} {what} (limit {limit:?}); saved to {}",
            dest.display()
        );
    }
}

/// A real container's checkpoint: (exported archive, image directory).
fn corpus(g: &Godwit, dir: &Path) -> (PathBuf, PathBuf) {
    let bundle = Bundle::new(&["counter", "10", "/tmp/count"]);
    let id = g.id("fuzzsrc");
    g.start_detached_null(&bundle, &id);
    g.ok(&["exec", &id, "sh", "-c", "echo corpus > /tmp/note"]);
    wait_for("ticks", Duration::from_secs(10), || {
        last_count(&bundle.rootfs().join("tmp/count")).filter(|&n| n >= 3)
    });
    let archive = dir.join("corpus.tar");
    let image = dir.join("image");
    g.ok(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        image.to_str().unwrap(),
        &id,
    ]);
    g.ok(&["checkpoint", "--export", archive.to_str().unwrap(), &id]);
    (archive, image)
}

/// The plain tar `bytes` as (name, header, data) entries.
fn entries(bytes: &[u8]) -> Option<Vec<(String, tar::Header, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().ok()? {
        let mut e = e.ok()?;
        let path = String::from_utf8(e.path_bytes().into_owned()).ok()?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).ok()?;
        out.push((path, e.header().clone(), data));
    }
    Some(out)
}

/// The archive again, config.dump's list made to agree with the entries.
fn relisted(mut entries: Vec<(String, tar::Header, Vec<u8>)>) -> Vec<u8> {
    if let Ok(mut config) = serde_json::from_slice::<serde_json::Value>(&entries[0].2) {
        if let Some(list) = config["entries"].as_array_mut() {
            for l in list {
                let Some(e) = entries
                    .iter()
                    .find(|e| Some(e.0.as_str()) == l["path"].as_str())
                else {
                    continue;
                };
                if l["type"] == "file" {
                    l["size"] = (e.2.len() as u64).into();
                    l["sha256"] = godwit_checkpoint::digest::of(&e.2).into();
                }
            }
        }
        entries[0].2 = serde_json::to_vec(&config).unwrap();
    }
    let mut b = tar::Builder::new(Vec::new());
    for (path, mut h, data) in entries {
        h.set_size(data.len() as u64);
        let _ = b.append_data(&mut h, path, &data[..]);
    }
    b.into_inner().unwrap_or_default()
}

fn report(target: &str, n: u64, start: Instant, refused: u64) {
    eprintln!(
        "fuzz {target}: {n} inputs in {:.1} s ({:.0}/s), {refused} refused, no panic or hang",
        start.elapsed().as_secs_f64(),
        n as f64 / start.elapsed().as_secs_f64()
    );
}

#[test]
fn fuzz_archive_import() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = corpus(&g, dir.path());
    let good = fs::read(&archive).unwrap();
    let good_entries = entries(&good).unwrap();
    let seed = seed();
    eprintln!(
        "fuzz archive: seed {seed} (GODWIT_FUZZ_SEED), corpus {} bytes in {} entries",
        good.len(),
        good_entries.len()
    );
    let mut in_import = Duration::ZERO;
    let mut rng = Rng(seed);
    let (start, budget) = (Instant::now(), Duration::from_secs(seconds()));
    let (mut n, mut refused) = (0u64, 0u64);
    while start.elapsed() < budget {
        n += 1;
        let input = if rng.below(2) == 0 {
            let mut bytes = good.clone();
            mutate(&mut rng, &mut bytes);
            bytes
        } else {
            // One entry's data mutated behind recomputed digests.
            let mut e = good_entries.clone();
            // Mostly the small entries: metadata, records, the inventory.
            let small: Vec<usize> = (0..e.len()).filter(|&i| e[i].2.len() < 1 << 20).collect();
            let i = if rng.below(10) > 0 && !small.is_empty() {
                small[rng.below(small.len())]
            } else {
                rng.below(e.len())
            };
            mutate(&mut rng, &mut e[i].2);
            relisted(e)
        };
        let file = dir.path().join("input.tar");
        fs::write(&file, &input).unwrap();
        let dest = dir.path().join("dest");
        let _ = fs::remove_dir_all(&dest);
        let (f, d) = (file.clone(), dest.clone());
        let (tx, rx) = mpsc::channel();
        let t = Instant::now();
        run_one(
            "archive",
            n,
            Duration::from_secs(30),
            |p| fs::write(p, &input).unwrap(),
            move || {
                let limits = ImportLimits {
                    max_total_size: 1 << 30,
                    ..Default::default()
                };
                let r = archive::import_trusted(&f, &d, &limits, &Trust::default());
                let _ = tx.send(r.is_ok());
            },
        );
        in_import += t.elapsed();
        match rx.recv() {
            Ok(true) => fs::remove_dir_all(&dest).unwrap(),
            _ => {
                refused += 1;
                assert!(
                    !dest.exists(),
                    "input {n}: a refused import left {}",
                    dest.display()
                );
            }
        }
    }
    eprintln!("fuzz archive: {in_import:?} of it in import");
    report("archive", n, start, refused);
}

#[test]
fn fuzz_image_reader() {
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, image) = corpus(&g, dir.path());
    let inventory: serde_json::Value =
        serde_json::from_slice(&fs::read(image.join("inventory.json")).unwrap()).unwrap();
    let names: Vec<String> = fs::read_dir(&image)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("pages-") && n != "inventory.json")
        .collect();
    let originals: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.clone(), fs::read(image.join(n)).unwrap()))
        .collect();
    let seed = seed();
    eprintln!("fuzz image: seed {seed} (GODWIT_FUZZ_SEED)");
    let mut rng = Rng(seed);
    let (start, budget) = (Instant::now(), Duration::from_secs(seconds()));
    let (mut n, mut refused) = (0u64, 0u64);
    let inv_bytes = serde_json::to_vec(&inventory).unwrap();
    while start.elapsed() < budget {
        n += 1;
        // Put the image back, then mutate the inventory or one record (its
        // digest in the inventory recomputed).
        for (name, bytes) in &originals {
            fs::write(image.join(name), bytes).unwrap();
        }
        let mut inv = inv_bytes.clone();
        let mut changed: Option<(String, Vec<u8>)> = None;
        if rng.below(3) == 0 || originals.is_empty() {
            mutate(&mut rng, &mut inv);
        } else {
            let (name, bytes) = &originals[rng.below(originals.len())];
            let mut bytes = bytes.clone();
            mutate(&mut rng, &mut bytes);
            let mut v = inventory.clone();
            for p in v["processes"].as_array_mut().into_iter().flatten() {
                if p["record"]["name"] == name.as_str() {
                    p["record"]["len"] = (bytes.len() as u64).into();
                    p["record"]["sha256"] = godwit_checkpoint::digest::of(&bytes).into();
                }
            }
            for e in v["extras"].as_array_mut().into_iter().flatten() {
                if e["name"] == name.as_str() {
                    e["len"] = (bytes.len() as u64).into();
                    e["sha256"] = godwit_checkpoint::digest::of(&bytes).into();
                }
            }
            inv = serde_json::to_vec(&v).unwrap();
            fs::write(image.join(name), &bytes).unwrap();
            changed = Some((name.clone(), bytes));
        }
        fs::write(image.join("inventory.json"), &inv).unwrap();
        // Page files are hashed on a quarter of the runs (they do not change).
        let pages = rng.below(4) == 0;
        let (img, tx_inv) = (image.clone(), inv.clone());
        let (tx, rx) = mpsc::channel();
        run_one(
            "image",
            n,
            Duration::from_secs(30),
            move |p| {
                fs::create_dir_all(p).unwrap();
                fs::write(p.join("inventory.json"), &tx_inv).unwrap();
                if let Some((name, bytes)) = changed {
                    fs::write(p.join(name), bytes).unwrap();
                }
            },
            move || {
                let _ = tx.send(godwit_checkpoint::verify_image(&img, pages).is_ok());
            },
        );
        if rx.recv() != Ok(true) {
            refused += 1;
        }
    }
    report("image", n, start, refused);
}

#[test]
fn fuzz_spec_intake() {
    use godwit_runtime::restore_policy as policy;
    let g = Godwit::new();
    let dir = tempfile::tempdir().unwrap();
    let (_, image) = corpus(&g, dir.path());
    let good = fs::read(image.join("spec.dump")).unwrap();
    let path = image.join("spec.dump");
    let orig: oci_spec::runtime::Spec =
        godwit_runtime::bundle::parse_json(&path, std::str::from_utf8(&good).unwrap()).unwrap();
    let seed = seed();
    eprintln!("fuzz spec: seed {seed} (GODWIT_FUZZ_SEED)");
    let mut rng = Rng(seed);
    let (start, budget) = (Instant::now(), Duration::from_secs(seconds()));
    let (mut n, mut refused) = (0u64, 0u64);
    while start.elapsed() < budget {
        n += 1;
        let mut input = good.clone();
        mutate(&mut rng, &mut input);
        let (p, o, bytes) = (path.clone(), orig.clone(), input.clone());
        let (tx, rx) = mpsc::channel();
        run_one(
            "spec",
            n,
            Duration::from_secs(30),
            |d| fs::write(d, &input).unwrap(),
            move || {
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    let _ = tx.send(false);
                    return;
                };
                let Ok(spec) =
                    godwit_runtime::bundle::parse_json::<oci_spec::runtime::Spec>(&p, text)
                else {
                    let _ = tx.send(false);
                    return;
                };
                let a = policy::check_compatible(&spec, &o).is_ok();
                let b = policy::check_compatible(&o, &spec).is_ok();
                let c = policy::check_archive_spec(&spec, &[PathBuf::from("/var/lib")]).is_ok();
                let seccomp = policy::compile_seccomp(&spec);
                let _ = policy::Allowed::from_spec(&spec, seccomp.ok().flatten());
                let _ = tx.send(a && b && c);
            },
        );
        if rx.recv() != Ok(true) {
            refused += 1;
        }
    }
    report("spec", n, start, refused);
}
