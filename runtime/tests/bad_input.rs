//! Bad input gets a clear error naming the problem, and leaves nothing behind.

mod common;

use common::*;

#[test]
fn missing_bundle_is_named() {
    let g = Godwit::new();
    let id = g.id("nobundle");
    let err = g.fails(&["create", "--bundle", "/nonexistent/bundle", &id]);
    assert!(err.contains("/nonexistent/bundle"), "{err}");
    assert!(err.contains("--bundle"), "says how to fix it: {err}");
    assert!(!g.state_dir(&id).exists());
}

#[test]
fn invalid_config_names_the_field() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["true"]);
    bundle.edit(|c| c["process"]["args"] = "not-a-list".into());
    let id = g.id("badcfg");
    let err = g.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("config.json"), "{err}");
    assert!(err.contains("process.args"), "names the field: {err}");
    assert!(!g.state_dir(&id).exists());

    bundle.edit(|c| c["process"]["args"] = serde_json::json!([]));
    let err = g.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("process.args"), "{err}");

    bundle.edit(|c| {
        c["process"]["args"] = serde_json::json!(["true"]);
        c["root"]["path"] = "no-such-rootfs".into();
    });
    let err = g.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("root.path"), "{err}");

    std::fs::write(bundle.path().join("config.json"), "{ not json").unwrap();
    let err = g.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("line 1"), "{err}");
    assert!(!g.state_dir(&id).exists());
}

#[test]
fn unknown_id_is_named() {
    let g = Godwit::new();
    for verb in ["state", "start", "kill", "delete", "pause", "resume", "ps"] {
        let err = g.fails(&[verb, "ghost"]);
        assert!(
            err.contains("container ghost does not exist"),
            "{verb}: {err}"
        );
    }
    // delete --force of a missing container is fine, as in runc.
    g.ok(&["delete", "--force", "ghost"]);
    let err = g.fails(&["state", "../etc"]);
    assert!(err.contains("invalid container id"), "{err}");
}

#[test]
fn duplicate_id_is_refused_and_the_first_runs_on() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("dup");
    g.start_detached(&bundle, &id);
    let pid = g.pid(&id);
    let err = g.fails(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(g.status(&id), "running");
    assert_eq!(g.pid(&id), pid);
}

#[test]
fn start_of_a_stopped_container_is_refused() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["true"]);
    let id = g.id("stopped");
    g.start_detached(&bundle, &id);
    wait_for("exit", std::time::Duration::from_secs(10), || {
        (g.status(&id) == "stopped").then_some(())
    });
    let err = g.fails(&["start", &id]);
    assert!(err.contains("status is stopped"), "{err}");
    let err = g.fails(&["kill", &id, "TERM"]);
    assert!(err.contains("status is stopped"), "{err}");
    let err = g.fails(&["exec", &id, "true"]);
    assert!(err.contains("status is stopped"), "{err}");
}

#[test]
fn kill_of_a_deleted_container_is_refused() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("deleted");
    g.start_detached(&bundle, &id);
    g.ok(&["delete", "--force", &id]);
    let err = g.fails(&["kill", &id, "KILL"]);
    assert!(err.contains("does not exist"), "{err}");
    let err = g.fails(&["kill", "--all", &id, "NOTASIGNAL"]);
    assert!(err.contains("NOTASIGNAL"), "{err}");
}

#[test]
fn malformed_process_file_is_named() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let id = g.id("badproc");
    g.start_detached(&bundle, &id);
    let pfile = bundle.path().join("process.json");
    std::fs::write(&pfile, r#"{"args": "sh", "cwd": "/"}"#).unwrap();
    let err = g.fails(&["exec", "--process", pfile.to_str().unwrap(), &id]);
    assert!(err.contains("process.json"), "{err}");
    assert!(err.contains("args"), "names the field: {err}");
    std::fs::write(&pfile, "{").unwrap();
    let err = g.fails(&["exec", "--process", pfile.to_str().unwrap(), &id]);
    assert!(err.contains("process.json"), "{err}");
    // The container is unharmed.
    assert_eq!(g.status(&id), "running");
}

#[test]
fn unsupported_flags_are_named() {
    let g = Godwit::new();
    let bundle = Bundle::new(&["true"]);
    let id = g.id("flags");
    let err = g.fails(&[
        "--systemd-cgroup",
        "create",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    if !std::path::Path::new("/run/systemd/system").exists() {
        assert!(err.contains("--systemd-cgroup"), "{err}");
    }
    assert!(!g.state_dir(&id).exists());
}
