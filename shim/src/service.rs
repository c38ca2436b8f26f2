//! The containerd task service (task API v2) over godwit's runtime library.
//! Each RPC finds its task and process, does one thing through the runtime,
//! updates the process record and publishes the event containerd expects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use containerd_shim::api::{self, Status};
use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO,
    TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use libcgroups::common::{CgroupManager, ControllerOpt};
use nix::unistd::Pid;

use godwit_runtime::store::{cgroup_manager, StateRoot};
use godwit_runtime::verbs;

use crate::checkpoint;
use crate::console::{self, ConsoleSocket};
use crate::container::{self, InitOptions};
use crate::error::{Result, ShimError};
use crate::events::Events;
use crate::options::TaskOptions;
use crate::process::{Exit, Process};
use crate::reaper;
use crate::rootfs;
use crate::stdio::{self, PendingIo, StdioPaths};

/// How long Delete waits for a process's last output to reach the fifos.
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

struct TaskEntry {
    id: String,
    bundle: PathBuf,
    root: StateRoot,
    init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    rootfs_mounted: bool,
    /// Set when Create named a checkpoint: Start restores it instead of
    /// starting a fresh init (as containerd's runc shim does).
    restore: Option<PendingRestore>,
    /// Serialises runtime calls on this container: libcontainer rewrites
    /// state.json in place, and a concurrent load would read it half-written.
    ops: Mutex<()>,
}

/// A restore recorded at Create, performed at Start.
struct PendingRestore {
    /// The checked image directory (inside containerd's checkpoint directory).
    image: PathBuf,
    no_pivot: bool,
    systemd: bool,
}

struct Inner {
    namespace: String,
    events: Events,
    exit: Arc<ExitSignal>,
    tasks: Mutex<HashMap<String, Arc<TaskEntry>>>,
}

pub struct Service {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service {
    pub fn new(namespace: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Service {
        let inner = Arc::new(Inner {
            namespace: namespace.to_string(),
            events: Events::start(publisher, namespace.to_string()),
            exit,
            tasks: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        if let Err(e) = reaper::start(move |pid, status| {
            if let Some(inner) = weak.upgrade() {
                inner.on_exit(pid, status);
            }
        }) {
            log::error!("cannot start the reaper; exits will not be reported: {e}");
        }
        Service { inner }
    }
}

fn paths(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> StdioPaths {
    StdioPaths {
        stdin: stdin.to_string(),
        stdout: stdout.to_string(),
        stderr: stderr.to_string(),
        terminal,
    }
}

/// What a process is given before it exists, and what is done once it does.
struct Prepared {
    child: stdio::ChildStdio,
    pending: Option<PendingIo>,
    console: Option<ConsoleSocket>,
}

fn prepare(p: &StdioPaths) -> Result<Prepared> {
    if p.terminal {
        Ok(Prepared {
            child: stdio::null()?,
            pending: None,
            console: Some(ConsoleSocket::new()?),
        })
    } else {
        let (child, pending) = stdio::pipes(p)?;
        Ok(Prepared {
            child,
            pending: Some(pending),
            console: None,
        })
    }
}

/// Starts copying once the process exists (receiving the pty master first).
fn attach(
    process: &Process,
    name: &str,
    pending: Option<PendingIo>,
    console: Option<ConsoleSocket>,
) -> Result<()> {
    let io = match (pending, console) {
        (Some(pending), _) => pending.start(name, None, process.exited_flag.clone()),
        (None, Some(socket)) => {
            let master = socket.receive()?;
            let (pending, master) = PendingIo::terminal(&process.paths, master)?;
            pending.start(name, Some(master), process.exited_flag.clone())
        }
        (None, None) => return Ok(()),
    };
    process.set_io(io);
    Ok(())
}

impl Inner {
    fn task(&self, id: &str) -> Result<Arc<TaskEntry>> {
        lock(&self.tasks)
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound {
                id: id.to_string(),
                exec_id: String::new(),
            })
    }

    fn process(&self, id: &str, exec_id: &str) -> Result<(Arc<TaskEntry>, Arc<Process>)> {
        let task = self.task(id)?;
        if exec_id.is_empty() {
            let init = task.init.clone();
            return Ok((task, init));
        }
        let process = lock(&task.execs).get(exec_id).cloned();
        match process {
            Some(p) => Ok((task, p)),
            None => Err(ShimError::NotFound {
                id: id.to_string(),
                exec_id: exec_id.to_string(),
            }),
        }
    }

    fn publish(&self, event: impl Event + 'static) {
        self.events.publish(event);
    }

    /// Called by the reaper (under the fork guard) for every child that exits.
    fn on_exit(&self, pid: Pid, status: i32) {
        let tasks: Vec<Arc<TaskEntry>> = lock(&self.tasks).values().cloned().collect();
        for task in tasks {
            let mut found: Vec<Arc<Process>> = Vec::new();
            if task.init.pid() == pid.as_raw() {
                found.push(task.init.clone());
            }
            found.extend(
                lock(&task.execs)
                    .values()
                    .filter(|p| p.pid() == pid.as_raw())
                    .cloned(),
            );
            for process in found {
                if let Some(exit) = process.set_exited(status) {
                    log::info!(
                        "task {} process {:?} (pid {}) exited with {}",
                        task.id,
                        process.exec_id,
                        pid,
                        status
                    );
                    let id = if process.exec_id.is_empty() {
                        task.id.clone()
                    } else {
                        process.exec_id.clone()
                    };
                    self.publish(TaskExit {
                        container_id: task.id.clone(),
                        id,
                        pid: pid.as_raw() as u32,
                        exit_status: exit.status,
                        exited_at: MessageField::some(exit.at),
                        ..Default::default()
                    });
                }
            }
        }
    }

    fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        let id = req.id.clone();
        if lock(&self.tasks).contains_key(&id) {
            return Err(ShimError::AlreadyExists { id });
        }
        let opts = TaskOptions::decode(
            req.options.as_ref(),
            &self.namespace,
            Path::new(&req.bundle),
        )?;
        let root = StateRoot::open(&opts.root).map_err(|e| ShimError::runtime(&id, e))?;
        // A checkpoint is checked whole before anything is mounted or created.
        let restore = if req.checkpoint.is_empty() {
            None
        } else {
            if req.terminal {
                return Err(ShimError::invalid(
                    "terminal",
                    format!(
                        "task {id}: tasks with a terminal cannot be restored by godwit yet; \
                         restore without a terminal"
                    ),
                ));
            }
            if root.container_dir(&id).exists() {
                return Err(ShimError::runtime(
                    &id,
                    godwit_runtime::RuntimeError::AlreadyExists {
                        id: id.clone(),
                        root: root.path().to_path_buf(),
                    },
                ));
            }
            Some(PendingRestore {
                image: checkpoint::check_image(&id, Path::new(&req.checkpoint))?,
                no_pivot: opts.no_pivot,
                systemd: opts.systemd_cgroup,
            })
        };
        let bundle = PathBuf::from(&req.bundle);
        opts.save(&bundle)?;
        let rootfs_mounted = rootfs::mount(&bundle, &req.rootfs)?;
        let process = Arc::new(Process::new(
            "",
            paths(&req.stdin, &req.stdout, &req.stderr, req.terminal),
            None,
        ));
        if let Some(restore) = restore {
            log::info!(
                "task {id} created; Start restores {}",
                restore.image.display()
            );
            lock(&self.tasks).insert(
                id.clone(),
                Arc::new(TaskEntry {
                    id: id.clone(),
                    bundle: bundle.clone(),
                    root: root.clone(),
                    init: process,
                    execs: Mutex::new(HashMap::new()),
                    rootfs_mounted,
                    restore: Some(restore),
                    ops: Mutex::new(()),
                }),
            );
            self.publish_create(&req, 0);
            // No process exists before Start (runc's shim answers 0 too).
            return Ok(api::CreateTaskResponse::default());
        }
        let created = (|| -> Result<i32> {
            let prepared = prepare(&process.paths)?;
            let _guard = reaper::fork_guard();
            let init_opts = InitOptions {
                bundle: &bundle,
                console_socket: prepared.console.as_ref().map(|c| c.path()),
                no_pivot: opts.no_pivot,
                systemd: opts.systemd_cgroup,
            };
            let container = container::create(&root, &id, &init_opts, prepared.child)?;
            let pid = container.pid().map(|p| p.as_raw()).unwrap_or(0);
            process.set_pid(pid);
            if let Err(e) = attach(&process, &id, prepared.pending, prepared.console) {
                let _ = verbs::delete::delete(&root, &id, true);
                return Err(e);
            }
            lock(&self.tasks).insert(
                id.clone(),
                Arc::new(TaskEntry {
                    id: id.clone(),
                    bundle: bundle.clone(),
                    root: root.clone(),
                    init: process.clone(),
                    execs: Mutex::new(HashMap::new()),
                    rootfs_mounted,
                    restore: None,
                    ops: Mutex::new(()),
                }),
            );
            Ok(pid)
        })();
        let pid = match created {
            Ok(pid) => pid,
            Err(e) => {
                if rootfs_mounted {
                    rootfs::unmount(&bundle);
                }
                return Err(e);
            }
        };
        log::info!("task {id} created, init pid {pid}");
        self.watch_oom(&id, pid);
        self.publish_create(&req, pid);
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn watch_oom(&self, id: &str, pid: i32) {
        let events = self.events.clone();
        let oom_id = id.to_string();
        if let Err(e) = crate::oom::watch(pid, move || {
            log::info!("task {oom_id}: out of memory");
            events.publish(TaskOOM {
                container_id: oom_id.clone(),
                ..Default::default()
            });
        }) {
            log::warn!("task {id}: {}", e.chain());
        }
    }

    fn publish_create(&self, req: &api::CreateTaskRequest, pid: i32) {
        self.publish(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid: pid as u32,
            ..Default::default()
        });
    }

    fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        let (task, process) = self.process(&req.id, &req.exec_id)?;
        let _ops = lock(&task.ops);
        if process.status() != Status::CREATED {
            return Err(ShimError::WrongState {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                op: "start",
                reason: format!("it is {:?}, not created", process.status()),
            });
        }
        if let (true, Some(restore)) = (req.exec_id.is_empty(), task.restore.as_ref()) {
            return self.start_restored(&task, &process, restore);
        }
        if req.exec_id.is_empty() {
            {
                let _guard = reaper::fork_guard();
                verbs::start::start(&task.root, &task.id)
                    .map_err(|e| ShimError::runtime(&task.id, e))?;
            }
            process.set_status(Status::RUNNING);
            let pid = process.pid();
            self.publish(TaskStart {
                container_id: task.id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        let spec = process.spec.clone().ok_or_else(|| ShimError::WrongState {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            op: "start",
            reason: "no process spec recorded".into(),
        })?;
        let started = prepare(&process.paths).and_then(|prepared| {
            let _guard = reaper::fork_guard();
            let pid = container::exec(
                &task.root,
                &task.id,
                &spec,
                prepared.console.as_ref().map(|c| c.path()),
                prepared.child,
            )?;
            // Registered under the guard, so its exit cannot be reaped first.
            process.set_pid(pid.as_raw());
            process.set_status(Status::RUNNING);
            Ok((pid.as_raw(), prepared.pending, prepared.console))
        });
        let (pid, pending, console) = match started {
            Ok(started) => started,
            Err(e) => {
                // containerd already waits on it: a process that never ran has ended.
                process.set_exited(255);
                return Err(e);
            }
        };
        let _ = std::fs::remove_file(&spec);
        attach(&process, &req.exec_id, pending, console)?;
        self.publish(TaskExecStarted {
            container_id: task.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Start of a task created from a checkpoint: the runtime creates the stub
    /// init with the task's stdio pipes and rebuilds the image's processes in
    /// it; the restored tree's root is the stub's pid, the shim's child.
    fn start_restored(
        &self,
        task: &TaskEntry,
        process: &Arc<Process>,
        restore: &PendingRestore,
    ) -> Result<api::StartResponse> {
        let args =
            checkpoint::restore_request(&task.id, &task.bundle, &restore.image, restore.no_pivot);
        let global = godwit_runtime::requests::RuntimeOptions {
            systemd_cgroup: restore.systemd,
        };
        let restored = stdio::pipes(&process.paths).and_then(|(child, pending)| {
            let stub_stdio = verbs::restore::StubStdio {
                stdin: child.stdin,
                stdout: child.stdout,
                stderr: child.stderr,
            };
            // The dumper ptraces the stub: the reaper must not wait meanwhile.
            let _guard = reaper::fork_guard();
            verbs::restore::restore_with_stdio(&task.root, &global, &args, Some(stub_stdio))
                .map_err(|e| ShimError::runtime(&task.id, e))?;
            let pid = task
                .root
                .load(&task.id)
                .map_err(|e| ShimError::runtime(&task.id, e))?
                .pid()
                .map(|p| p.as_raw())
                .unwrap_or(0);
            // Registered under the guard, so its exit cannot be reaped first.
            process.set_pid(pid);
            process.set_status(Status::RUNNING);
            Ok((pid, pending))
        });
        let (pid, pending) = match restored {
            Ok(restored) => restored,
            Err(e) => {
                // containerd may wait on it: a process that never ran has ended.
                process.set_exited(255);
                return Err(e);
            }
        };
        attach(process, &task.id, Some(pending), None)?;
        log::info!(
            "task {} restored from {}, init pid {pid}",
            task.id,
            restore.image.display()
        );
        self.watch_oom(&task.id, pid);
        self.publish(TaskStart {
            container_id: task.id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Dumps the task into the checkpoint directory. The processes keep
    /// running (still paused if they were); with `exit` they are killed once
    /// the image is complete. A failed dump leaves the task as it was.
    fn checkpoint(&self, req: api::CheckpointTaskRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let request = checkpoint::decode(req.options.as_ref(), &req.path)?;
        if task.init.paths.terminal {
            return Err(ShimError::WrongState {
                id: req.id.clone(),
                exec_id: String::new(),
                op: "checkpoint",
                reason: "it has a terminal, and godwit cannot restore terminal tasks yet".into(),
            });
        }
        let _ops = lock(&task.ops);
        match task.init.status() {
            Status::RUNNING | Status::PAUSED => {}
            other => {
                return Err(ShimError::WrongState {
                    id: req.id.clone(),
                    exec_id: String::new(),
                    op: "checkpoint",
                    reason: format!("it is {other:?}, not running or paused"),
                })
            }
        };
        let pids =
            verbs::ps::pids(&task.root, &task.id).map_err(|e| ShimError::runtime(&task.id, e))?;
        checkpoint::check_no_locks(&task.id, &pids, request.file_locks)?;
        let args = checkpoint::runtime_request(&task.id, &request);
        let dumped = {
            // The dumper ptraces the task's processes: no reaping meanwhile.
            let _guard = reaper::fork_guard();
            verbs::checkpoint::checkpoint(&task.root, &args)
        };
        // With exit the dumper killed the tree and, as its tracer, waited for
        // the processes: the reaper may never see those exits. Report them,
        // also when a later step (the container's delete) failed.
        let mut processes = vec![task.init.clone()];
        processes.extend(lock(&task.execs).values().cloned());
        for process in processes {
            let pid = Pid::from_raw(process.pid());
            if pid.as_raw() > 0
                && process.exit().is_none()
                && nix::sys::signal::kill(pid, None) == Err(nix::errno::Errno::ESRCH)
            {
                self.on_exit(pid, 128 + libc::SIGKILL);
            }
        }
        dumped.map_err(|e| ShimError::runtime(&task.id, e))?;
        log::info!(
            "task {} checkpointed into {}",
            task.id,
            request.image.display()
        );
        self.publish(TaskCheckpointed {
            container_id: task.id.clone(),
            checkpoint: request.image.display().to_string(),
            ..Default::default()
        });
        Ok(())
    }

    fn state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        let (task, process) = self.process(&req.id, &req.exec_id)?;
        let exit = process.exit();
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle: task.bundle.display().to_string(),
            pid: process.pid() as u32,
            status: process.status().into(),
            stdin: process.paths.stdin.clone(),
            stdout: process.paths.stdout.clone(),
            stderr: process.paths.stderr.clone(),
            terminal: process.paths.terminal,
            exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| e.at).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn kill(&self, req: api::KillRequest) -> Result<()> {
        let (task, process) = self.process(&req.id, &req.exec_id)?;
        let _ops = lock(&task.ops);
        let signal = i32::try_from(req.signal)
            .ok()
            .and_then(|s| nix::sys::signal::Signal::try_from(s).ok())
            .ok_or_else(|| ShimError::invalid("signal", format!("{} is no signal", req.signal)))?;
        if process.exit().is_some() && !(req.all && req.exec_id.is_empty()) {
            return Err(ShimError::NotFound {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
            });
        }
        if req.exec_id.is_empty() {
            let mut container = task
                .root
                .load(&task.id)
                .map_err(|e| ShimError::runtime(&task.id, e))?;
            let signal = libcontainer::signal::Signal::try_from(signal as i32)
                .map_err(|e| ShimError::invalid("signal", e.to_string()))?;
            container.kill(signal, req.all).map_err(|e| {
                ShimError::runtime(
                    &task.id,
                    godwit_runtime::RuntimeError::lc("kill", &task.id, e),
                )
            })?;
        } else {
            nix::sys::signal::kill(Pid::from_raw(process.pid()), signal).map_err(|e| {
                ShimError::sys(
                    format!(
                        "task {} exec {}: kill pid {}",
                        req.id,
                        req.exec_id,
                        process.pid()
                    ),
                    e,
                )
            })?;
        }
        Ok(())
    }

    fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        let (task, process) = self.process(&req.id, &req.exec_id)?;
        let _ops = lock(&task.ops);
        if matches!(process.status(), Status::RUNNING | Status::PAUSED) {
            return Err(ShimError::WrongState {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                op: "delete",
                reason: "it is still running; kill it first".into(),
            });
        }
        if !req.exec_id.is_empty() {
            lock(&task.execs).remove(&req.exec_id);
            if let Some(spec) = &process.spec {
                let _ = std::fs::remove_file(spec);
            }
            process.with_io(|io| {
                io.wait_output(OUTPUT_DRAIN);
                io.close();
            });
            // A never-started exec: release anyone waiting on it.
            process.set_exited(255);
            let exit = process.exit();
            return Ok(delete_response(process.pid(), exit));
        }
        // pid 0: a restore that never started created no container (one of
        // that name in the state root belongs to someone else).
        if process.pid() != 0 {
            let _guard = reaper::fork_guard();
            // A created (never started) init is killed here.
            verbs::delete::delete(&task.root, &task.id, true)
                .map_err(|e| ShimError::runtime(&task.id, e))?;
        }
        // A restore that never started has no process to wait for.
        let exit = if process.pid() == 0 {
            process.exit()
        } else {
            process.wait(Some(Duration::from_secs(2)))
        };
        process.with_io(|io| {
            io.wait_output(OUTPUT_DRAIN);
            io.close();
        });
        // Execs never started or deleted: nobody will report them any more.
        for exec in lock(&task.execs).values() {
            exec.with_io(|io| io.close());
            exec.set_exited(255);
        }
        process.set_exited(137);
        if task.rootfs_mounted {
            rootfs::unmount(&task.bundle);
        }
        lock(&self.tasks).remove(&task.id);
        let response = delete_response(process.pid(), exit);
        self.publish(TaskDelete {
            container_id: task.id.clone(),
            pid: response.pid,
            exit_status: response.exit_status,
            exited_at: response.exited_at.clone(),
            id: task.id.clone(),
            ..Default::default()
        });
        Ok(response)
    }

    fn exec(&self, req: api::ExecProcessRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        if matches!(task.init.status(), Status::STOPPED) {
            return Err(ShimError::WrongState {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                op: "exec",
                reason: "the task has stopped".into(),
            });
        }
        let spec = req
            .spec
            .as_ref()
            .filter(|s| !s.value.is_empty())
            .ok_or_else(|| ShimError::invalid("spec", "missing: the process to exec"))?;
        // The value is the OCI process as JSON; check it here to name the field.
        let path = task
            .root
            .container_dir(&task.id)
            .join(format!("exec-{}.json", req.exec_id));
        let text = std::str::from_utf8(&spec.value)
            .map_err(|e| ShimError::invalid("spec", e.to_string()))?;
        let _: oci_spec::runtime::Process = godwit_runtime::bundle::parse_json(&path, text)
            .map_err(|e| ShimError::runtime(&task.id, e))?;
        {
            // Registered now, run at Start (containerd's exec protocol).
            let mut execs = lock(&task.execs);
            if execs.contains_key(&req.exec_id) {
                return Err(ShimError::AlreadyExists {
                    id: format!("{} exec {}", req.id, req.exec_id),
                });
            }
            std::fs::write(&path, &spec.value).map_err(|e| ShimError::io(&path, e))?;
            let process = Process::new(
                &req.exec_id,
                paths(&req.stdin, &req.stdout, &req.stderr, req.terminal),
                Some(path),
            );
            execs.insert(req.exec_id.clone(), Arc::new(process));
        }
        self.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn resize_pty(&self, req: api::ResizePtyRequest) -> Result<()> {
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        let resized = process.with_io(|io| {
            io.console
                .as_ref()
                .map(|master| console::resize(master, req.width, req.height))
        });
        match resized.flatten() {
            Some(result) => result,
            None => Err(ShimError::WrongState {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                op: "resize the pty of",
                reason: "it has no terminal".into(),
            }),
        }
    }

    fn close_io(&self, req: api::CloseIORequest) -> Result<()> {
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            process.with_io(|io| io.close_stdin());
        }
        Ok(())
    }

    fn pause(&self, req: api::PauseRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let _ops = lock(&task.ops);
        verbs::pause::pause(&task.root, &task.id).map_err(|e| ShimError::runtime(&task.id, e))?;
        task.init.set_status(Status::PAUSED);
        self.publish(TaskPaused {
            container_id: task.id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn resume(&self, req: api::ResumeRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let _ops = lock(&task.ops);
        verbs::pause::resume(&task.root, &task.id).map_err(|e| ShimError::runtime(&task.id, e))?;
        task.init.set_status(Status::RUNNING);
        self.publish(TaskResumed {
            container_id: task.id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let task = self.task(&req.id)?;
        let _ops = lock(&task.ops);
        let pids =
            verbs::ps::pids(&task.root, &task.id).map_err(|e| ShimError::runtime(&task.id, e))?;
        let execs: HashMap<i32, String> = lock(&task.execs)
            .values()
            .map(|p| (p.pid(), p.exec_id.clone()))
            .collect();
        let mut processes = Vec::new();
        for pid in pids {
            let mut info = ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            };
            if let Some(exec_id) = execs.get(&pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                let value = details
                    .write_to_bytes()
                    .map_err(|e| ShimError::invalid("process details", e.to_string()))?;
                let mut any = Any::new();
                any.type_url = "containerd.runc.v1.ProcessDetails".into();
                any.value = value;
                info.info = MessageField::some(any);
            }
            processes.push(info);
        }
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn update(&self, req: api::UpdateTaskRequest) -> Result<()> {
        let task = self.task(&req.id)?;
        let _ops = lock(&task.ops);
        let resources: oci_spec::runtime::LinuxResources = match req.resources.as_ref() {
            Some(any) if !any.value.is_empty() => serde_json::from_slice(&any.value)
                .map_err(|e| ShimError::invalid("resources", e.to_string()))?,
            _ => return Err(ShimError::invalid("resources", "missing")),
        };
        let container = task
            .root
            .load(&task.id)
            .map_err(|e| ShimError::runtime(&task.id, e))?;
        let manager = cgroup_manager(&container).map_err(|e| ShimError::runtime(&task.id, e))?;
        manager
            .apply(&ControllerOpt {
                resources: &resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| {
                ShimError::runtime(&task.id, godwit_runtime::RuntimeError::cgroup(&task.id, e))
            })?;
        Ok(())
    }

    fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let (_, process) = self.process(&req.id, &req.exec_id)?;
        let exit = process.wait(None);
        Ok(api::WaitResponse {
            exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| e.at).into(),
            ..Default::default()
        })
    }

    fn stats(&self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let task = self.task(&req.id)?;
        let _ops = lock(&task.ops);
        let container = task
            .root
            .load(&task.id)
            .map_err(|e| ShimError::runtime(&task.id, e))?;
        let manager = cgroup_manager(&container).map_err(|e| ShimError::runtime(&task.id, e))?;
        let stats = manager.stats().map_err(|e| {
            ShimError::runtime(&task.id, godwit_runtime::RuntimeError::cgroup(&task.id, e))
        })?;
        let setup = libcgroups::common::get_cgroup_setup()
            .unwrap_or(libcgroups::common::CgroupSetup::Legacy);
        Ok(api::StatsResponse {
            stats: MessageField::some(crate::metrics::to_any(&stats, setup)?),
            ..Default::default()
        })
    }

    fn connect(&self, req: api::ConnectRequest) -> Result<api::ConnectResponse> {
        let task_pid = lock(&self.tasks)
            .get(&req.id)
            .map(|t| t.init.pid() as u32)
            .unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: format!("godwit {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    fn shutdown(&self, req: api::ShutdownRequest) -> Result<()> {
        // Other tasks grouped in this shim keep it alive unless told "now".
        if !req.now && !lock(&self.tasks).is_empty() {
            return Ok(());
        }
        // The delete event was queued just before containerd asked this.
        self.events.flush(Duration::from_secs(5));
        self.exit.signal();
        Ok(())
    }
}

fn delete_response(pid: i32, exit: Option<Exit>) -> api::DeleteResponse {
    api::DeleteResponse {
        pid: pid as u32,
        // No exit seen (killed before its status was reaped): report SIGKILL.
        exit_status: exit.as_ref().map(|e| e.status).unwrap_or(137),
        exited_at: MessageField::some(exit.map(|e| e.at).unwrap_or_else(crate::process::now)),
        ..Default::default()
    }
}

fn reply<T>(rpc: &str, id: &str, r: Result<T>) -> TtrpcResult<T> {
    log::debug!("{rpc} {id}: {}", if r.is_ok() { "ok" } else { "error" });
    r.map_err(ShimError::into_ttrpc)
}

impl Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        reply("create", &id, self.inner.create(req))
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let id = req.id.clone();
        reply("start", &id, self.inner.start(req))
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let id = req.id.clone();
        reply("state", &id, self.inner.state(req))
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let id = req.id.clone();
        reply("delete", &id, self.inner.delete(req))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let id = req.id.clone();
        reply("pids", &id, self.inner.pids(req))
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "pause",
            &id,
            self.inner.pause(req).map(|()| api::Empty::new()),
        )
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "resume",
            &id,
            self.inner.resume(req).map(|()| api::Empty::new()),
        )
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "checkpoint",
            &id,
            self.inner.checkpoint(req).map(|()| api::Empty::new()),
        )
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "kill",
            &id,
            self.inner.kill(req).map(|()| api::Empty::new()),
        )
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "exec",
            &id,
            self.inner.exec(req).map(|()| api::Empty::new()),
        )
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "resize_pty",
            &id,
            self.inner.resize_pty(req).map(|()| api::Empty::new()),
        )
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "close_io",
            &id,
            self.inner.close_io(req).map(|()| api::Empty::new()),
        )
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "update",
            &id,
            self.inner.update(req).map(|()| api::Empty::new()),
        )
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let id = req.id.clone();
        reply("wait", &id, self.inner.wait(req))
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let id = req.id.clone();
        reply("stats", &id, self.inner.stats(req))
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let id = req.id.clone();
        reply("connect", &id, self.inner.connect(req))
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        reply(
            "shutdown",
            &id,
            self.inner.shutdown(req).map(|()| api::Empty::new()),
        )
    }
}

/// Used by `delete` of the shim binary: the bundle's recorded options.
pub fn recorded_root(bundle: &Path, namespace: &str) -> PathBuf {
    TaskOptions::load(bundle)
        .map(|o| o.root)
        .unwrap_or_else(|_| crate::options::default_root(bundle).join(namespace))
}
