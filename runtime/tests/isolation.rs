//! The container's environment per its spec: namespaces, user and time
//! namespaces when asked, hostname, seccomp.

mod common;

use common::*;

fn run_output(g: &Godwit, bundle: &Bundle, name: &str) -> (Option<i32>, String, String) {
    let id = g.id(name);
    let out = g.run(&["run", "--bundle", bundle.path().to_str().unwrap(), &id]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn namespaces_and_hostname_follow_the_spec() {
    let g = Godwit::new();
    let kinds = ["pid", "mnt", "ipc", "uts", "net", "cgroup"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let bundle = Bundle::new(&["sh", "-c", &format!("{script}; hostname; echo pid=$$")]);
    bundle.edit(|c| {
        c["hostname"] = "godwit-test".into();
        // runc's default spec has no cgroup namespace: ask for one.
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "cgroup"}));
    });
    let (code, out, err) = run_output(&g, &bundle, "ns");
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    for (i, kind) in kinds.iter().enumerate() {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert_ne!(
            lines[i],
            host.to_str().unwrap(),
            "{kind} namespace is the container's own"
        );
    }
    assert_eq!(lines[kinds.len()], "godwit-test");
    assert_eq!(
        lines[kinds.len() + 1],
        "pid=1",
        "the process is pid 1 of its pid namespace"
    );
}

#[test]
fn user_namespace_maps_ids_when_asked() {
    let g = Godwit::new();
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u",
    ]);
    bundle.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    let (code, out, err) = run_output(&g, &bundle, "userns");
    assert_eq!(code, Some(0), "{err}");
    let fields: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], ["0", "200000", "65536"]);
    assert_eq!(fields[1], ["0", "200000", "65536"]);
    assert_eq!(fields[2], ["0"]);
}

#[test]
fn time_namespace_applies_the_offsets() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["cat", "/proc/uptime"]);
    let offset = 1_000_000i64;
    bundle.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(serde_json::json!({"type": "time"}));
        c["linux"]["timeOffsets"] = serde_json::json!({
            "monotonic": {"secs": offset, "nanosecs": 0},
            "boottime": {"secs": offset, "nanosecs": 0}
        });
    });
    let host_before: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (code, out, err) = run_output(&g, &bundle, "timens");
    assert_eq!(code, Some(0), "{err}");
    let inside: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    let shift = inside - host_before;
    assert!(
        (offset as f64 - 5.0..offset as f64 + 5.0).contains(&shift),
        "uptime inside is the host's + {offset}s: shift {shift}"
    );
}

#[test]
fn seccomp_profile_is_enforced() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sh", "-c", "mkdir /tmp/blocked; echo mkdir=$?; echo alive"]);
    bundle.edit(|c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{
                "names": ["mkdir", "mkdirat"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 1
            }]
        });
    });
    let (code, out, err) = run_output(&g, &bundle, "seccomp");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("mkdir=1"), "mkdir denied: {out}");
    assert!(out.contains("alive"));
    assert!(!bundle.rootfs().join("tmp/blocked").exists());

    // Without the profile the same command succeeds: the test can tell.
    let bundle = Bundle::new(&["sh", "-c", "mkdir /tmp/allowed; echo mkdir=$?"]);
    let (_, out, _) = run_output(&g, &bundle, "noseccomp");
    assert!(out.contains("mkdir=0"), "{out}");
}
