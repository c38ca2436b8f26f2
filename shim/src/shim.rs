//! The shim binary's side of the shim v2 protocol: `start` spawns the daemon
//! and prints its socket address, `delete` cleans up after a dead shim, and the
//! daemon serves the task service until Shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, Shim, StartOpts};

use godwit_runtime::store::StateRoot;

use crate::service::{recorded_root, Service};

/// The annotation by which CRI groups a pod's containers in one shim.
const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

pub struct GodwitShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

impl Shim for GodwitShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            // containerd runs the shim in the bundle directory.
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        GodwitShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = grouping(&self.bundle, &opts.id);
        let (_, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // The daemon is gone (crashed or killed): remove what it left.
        let root = recorded_root(&self.bundle, &self.namespace);
        match StateRoot::open(&root) {
            Ok(root) => {
                if let Err(e) = godwit_runtime::verbs::delete::delete(&root, &self.id, true) {
                    log::warn!("delete {}: {e}", self.id);
                }
            }
            Err(e) => log::warn!("open state root {}: {e}", root.display()),
        }
        crate::rootfs::unmount(&self.bundle);
        // The dead daemon's socket (containerd only removes the bundle).
        if let Ok(address) = std::fs::read_to_string(self.bundle.join("address")) {
            let _ = std::fs::remove_file(address.trim().trim_start_matches("unix://"));
        }
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(crate::process::now()),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
        // containerd-shim would now join every connection thread, and a Wait
        // RPC of a client that went away blocks there for good. Nothing is
        // left to serve: remove the socket and exit, as Go shims do.
        if let Ok(address) = std::fs::read_to_string("address") {
            let path = address.trim().trim_start_matches("unix://");
            let _ = std::fs::remove_file(path);
        }
        log::info!("shim for {} exits", self.id);
        std::process::exit(0);
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        Service::new(&self.namespace, publisher, self.exit.clone())
    }
}

/// One shim per container, except that a pod's containers share their sandbox's.
fn grouping(bundle: &Path, id: &str) -> String {
    let config = bundle.join("config.json");
    std::fs::read(&config)
        .ok()
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .and_then(|v| {
            v.pointer(&format!(
                "/annotations/{}",
                SANDBOX_ANNOTATION.replace('/', "~1")
            ))
            .and_then(|s| s.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| id.to_string())
}
