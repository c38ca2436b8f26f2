use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use oci_spec::runtime::Process;

use crate::bundle::parse_json;
use crate::cli::Exec;
use crate::error::{Result, RuntimeError};
use crate::store::{recorded_spec, StateRoot};
use crate::verbs::run::{prepare_foreground, wait_forwarding};

/// `uid[:gid]` as runc takes it.
pub fn parse_user(text: &str) -> Result<(u32, Option<u32>)> {
    let invalid = || RuntimeError::InvalidValue {
        what: "--user",
        value: text.to_string(),
        reason: "expected UID or UID:GID (numbers)".into(),
    };
    let (uid, gid) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid = uid.parse().map_err(|_| invalid())?;
    let gid = gid.map(|g| g.parse().map_err(|_| invalid())).transpose()?;
    Ok((uid, gid))
}

/// Runs a process in a running container. Detached, returns 0 once it runs;
/// otherwise returns its exit status (128 + signal when a signal ended it).
pub fn exec(root: &StateRoot, args: &Exec) -> Result<i32> {
    let id = args.container_id.as_str();
    if args.process_label.is_some() {
        return Err(RuntimeError::Unsupported {
            flag: "--process-label",
            reason: "godwit has no SELinux support; omit the flag".into(),
        });
    }
    let container = root.load(id)?;
    match container.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused if args.ignore_paused => {}
        status => {
            return Err(RuntimeError::WrongStatus {
                id: id.to_string(),
                op: "exec into",
                status: crate::verbs::state::status_name(status),
                hint: "exec needs a running container (--ignore-paused for a paused one)",
            })
        }
    }
    let mut env = std::collections::HashMap::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| RuntimeError::InvalidValue {
                what: "--env",
                value: kv.clone(),
                reason: "expected KEY=VALUE".into(),
            })?;
        env.insert(k.to_string(), v.to_string());
    }
    let user = args.user.as_deref().map(parse_user).transpose()?;

    // A --process file is checked here so that a bad one is named by field;
    // --tty with plain args is turned into such a file, since only a process
    // document can ask libcontainer for a terminal.
    let process_file: Option<PathBuf> = match (&args.process, args.tty) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
            let process: Process = parse_json(path, &text)?;
            if process.args().as_ref().is_none_or(|a| a.is_empty()) {
                return Err(RuntimeError::InvalidConfig {
                    path: path.clone(),
                    field: "args".into(),
                    reason: "empty: name the program to run".into(),
                });
            }
            Some(path.clone())
        }
        (None, true) => Some(tty_process_file(&container, args, &env, user)?),
        (None, false) => {
            if args.command.is_empty() {
                return Err(RuntimeError::InvalidValue {
                    what: "exec arguments",
                    value: String::new(),
                    reason: "name the command to run, or pass --process FILE".into(),
                });
            }
            None
        }
    };

    let signals = prepare_foreground(args.detach)?;
    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(root.path())
        .and_then(|b| {
            b.with_console_socket(args.console_socket.as_ref())
                .with_pid_file(args.pid_file.as_ref())
        })
        .and_then(|b| {
            b.with_preserved_fds(args.preserve_fds)
                .as_tenant()
                .with_detach(args.detach)
                .with_cwd(args.cwd.as_ref())
                .with_env(env)
                .with_process(process_file.as_ref())
                .with_no_new_privs(args.no_new_privs)
                .with_container_args(args.command.clone())
                .with_additional_gids(args.additional_gids.clone())
                .with_user(user.map(|u| u.0))
                .with_group(user.and_then(|u| u.1))
                .with_capabilities(args.cap.clone())
                .with_ignore_paused(args.ignore_paused)
                .with_sub_cgroup(args.cgroup.clone())
                .with_apparmor(args.apparmor.clone())
                .build()
        });
    if args.tty && args.process.is_none() {
        if let Some(tmp) = &process_file {
            let _ = std::fs::remove_file(tmp);
        }
    }
    let pid = built.map_err(|e| RuntimeError::lc("exec into", id, e))?;
    if args.detach {
        return Ok(0);
    }
    wait_forwarding(pid, &signals, None)
}

/// A process document for `exec --tty ARGS…`: the container's own process
/// (user, capabilities, rlimits, env) with the exec's overrides.
fn tty_process_file(
    container: &libcontainer::container::Container,
    args: &Exec,
    env: &std::collections::HashMap<String, String>,
    user: Option<(u32, Option<u32>)>,
) -> Result<PathBuf> {
    let spec = recorded_spec(container)?;
    let mut process = spec.process().clone().unwrap_or_default();
    if args.command.is_empty() {
        return Err(RuntimeError::InvalidValue {
            what: "exec arguments",
            value: String::new(),
            reason: "name the command to run, or pass --process FILE".into(),
        });
    }
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(true));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut merged: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| !env.contains_key(kv.split('=').next().unwrap_or_default()))
        .collect();
    merged.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    process.set_env(Some(merged));
    if let Some((uid, gid)) = user {
        let mut u = process.user().clone();
        u.set_uid(uid);
        if let Some(gid) = gid {
            u.set_gid(gid);
        }
        process.set_user(u);
    }
    let path = container
        .root
        .join(format!("exec-tty-{}.json", std::process::id()));
    let text = serde_json::to_vec(&process).map_err(|e| RuntimeError::io(&path, e.into()))?;
    std::fs::write(&path, text).map_err(|e| RuntimeError::io(&path, e))?;
    Ok(path)
}
