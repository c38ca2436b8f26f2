//! End-to-end: real workloads in their own pid + mount namespace, dumped,
//! killed, restored into a stub, checked by their own output.

mod common;

use std::time::Duration;

use common::*;
use godwit_checkpoint::{dump, restore, stub::Stub, DumpOptions, RestoreOptions};

const T: Duration = Duration::from_secs(10);

#[test]
fn counter_continues_after_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let count = tmp.path().join("count");
    let mut w = spawn_in_ns(&workload("counter"), &["10", count.to_str().unwrap()], tmp.path());
    wait_for(&count, "5 lines", T, |l| l.len() >= 5);
    let img = tmp.path().join("img");
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", w.pid)).unwrap();
    let stats = dump(&[w.pid], &img, &DumpOptions::default()).expect("dump");
    assert_eq!(stats.processes, 1);
    w.wait_gone();
    let before = lines(&count);
    let last = assert_consecutive(&before);

    let stub = Stub::spawn().unwrap();
    let _r = restore(&img, stub.pid, &RestoreOptions::default()).expect("restore");
    let restored = Child::adopt(stub.release());
    let after = wait_for(&count, "new lines after restore", T, |l| l.len() >= before.len() + 5);
    assert!(restored.alive());
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", restored.pid)).unwrap();
    assert_eq!(strip_dev_ino(&maps_before), strip_dev_ino(&maps_after), "maps differ");
    let n = assert_consecutive(&after);
    assert!(n > last + 4, "counter did not continue: {last} → {n}");
    // stdout (not O_APPEND) continued at the dumped offset.
    let out = lines(&tmp.path().join("stdout"));
    assert_consecutive(&out);
}

/// maps lines without dev/inode columns of anonymous mappings (they are equal
/// for files: same path, same file).
fn strip_dev_ino(m: &str) -> Vec<String> {
    m.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {}", f[0], f[1], f[2], f.get(5).unwrap_or(&""))
        })
        .collect()
}
