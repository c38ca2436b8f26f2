//! One process of a task (the init, or an exec): its pid, status, exit and
//! stdio. Wait blocks on the condition variable until the reaper records the
//! exit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::api::Status;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::stdio::{ProcessIo, StdioPaths};

#[derive(Debug, Clone)]
pub struct Exit {
    pub status: u32,
    pub at: Timestamp,
}

#[derive(Debug)]
struct State {
    pid: i32,
    status: Status,
    exit: Option<Exit>,
}

pub struct Process {
    /// "" for the init.
    pub exec_id: String,
    pub paths: StdioPaths,
    /// The OCI process document of an exec (written at Exec, used at Start).
    pub spec: Option<PathBuf>,
    state: Mutex<State>,
    exited: Condvar,
    /// Set with the exit; read by the pty copier without taking any lock.
    pub exited_flag: Arc<AtomicBool>,
    pub io: Mutex<Option<ProcessIo>>,
}

pub fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = Timestamp::new();
    t.seconds = d.as_secs() as i64;
    t.nanos = d.subsec_nanos() as i32;
    t
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Process {
    pub fn new(exec_id: &str, paths: StdioPaths, spec: Option<PathBuf>) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            paths,
            spec,
            state: Mutex::new(State {
                pid: 0,
                status: Status::CREATED,
                exit: None,
            }),
            exited: Condvar::new(),
            exited_flag: Arc::new(AtomicBool::new(false)),
            io: Mutex::new(None),
        }
    }

    pub fn pid(&self) -> i32 {
        lock(&self.state).pid
    }

    pub fn status(&self) -> Status {
        lock(&self.state).status
    }

    pub fn exit(&self) -> Option<Exit> {
        lock(&self.state).exit.clone()
    }

    pub fn set_pid(&self, pid: i32) {
        lock(&self.state).pid = pid;
    }

    /// Changes a live process's status (not once it has exited).
    pub fn set_status(&self, status: Status) {
        let mut state = lock(&self.state);
        if state.exit.is_none() {
            state.status = status;
        }
    }

    pub fn set_io(&self, io: ProcessIo) {
        *lock(&self.io) = Some(io);
    }

    pub fn with_io<T>(&self, f: impl FnOnce(&ProcessIo) -> T) -> Option<T> {
        lock(&self.io).as_ref().map(f)
    }

    /// Records the exit; returns it, or None if one was already recorded.
    pub fn set_exited(&self, status: i32) -> Option<Exit> {
        let mut state = lock(&self.state);
        if state.exit.is_some() {
            return None;
        }
        let exit = Exit {
            status: status as u32,
            at: now(),
        };
        state.exit = Some(exit.clone());
        state.status = Status::STOPPED;
        self.exited_flag.store(true, Ordering::Release);
        self.exited.notify_all();
        Some(exit)
    }

    /// Blocks until the process exits (at most `timeout` when given).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Exit> {
        let state = lock(&self.state);
        let state = match timeout {
            None => self
                .exited
                .wait_while(state, |s| s.exit.is_none())
                .unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.exited
                    .wait_timeout_while(state, t, |s| s.exit.is_none())
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        state.exit.clone()
    }
}
