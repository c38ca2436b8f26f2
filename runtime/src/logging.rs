//! Log lines as runc writes them. containerd's and podman's runc drivers read
//! the `--log` file after a failure and take the last line whose `level` is
//! "error" as the message (`{"level":"error","msg":"…","time":"…"}`), so the
//! JSON format is hand-written to match logrus rather than tracing's own.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::LogFormat;

struct RuncLogLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    max_level: Level,
    /// Only godwit's events and libcontainer's container-level ones (stderr
    /// without --debug: libcontainer's own error lines repeat ours).
    only_ours: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

impl RuncLogLayer {
    fn wanted(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= self.max_level
            && (!self.only_ours
                || metadata.target().starts_with("godwit")
                || (metadata.target().starts_with("libcontainer::container")
                    && *metadata.level() == Level::WARN))
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for RuncLogLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        self.wanted(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !self.wanted(event.metadata()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        // logrus's default: RFC 3339 to the second, as runc writes it.
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let level = level_name(event.metadata().level());
        let line = match self.format {
            LogFormat::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert("level".into(), level.into());
                obj.insert("msg".into(), fields.message.into());
                obj.insert("time".into(), time.into());
                for (k, v) in fields.rest {
                    obj.insert(k, v.into());
                }
                serde_json::Value::Object(obj).to_string()
            }
            LogFormat::Text => {
                let mut line = format!("time=\"{time}\" level={level} msg={:?}", fields.message);
                for (k, v) in fields.rest {
                    let _ = write!(line, " {k}={v:?}");
                }
                line
            }
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Installs the global logger, as runc's logrus: to the `--log` file (info
/// and up), or to stderr in the same format — godwit's own errors and
/// warnings (and libcontainer's container-level warnings, e.g. a failed
/// poststop hook; its error lines only repeat ours), everything with `--debug`.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let (out, to_file): (Box<dyn Write + Send>, bool) = match log {
        Some(path) => (
            Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            true,
        ),
        None => (Box::new(std::io::stderr()), false),
    };
    let max_level = if debug {
        Level::DEBUG
    } else if to_file {
        Level::INFO
    } else {
        Level::WARN
    };
    let layer = RuncLogLayer {
        out: Mutex::new(out),
        format,
        max_level,
        only_ours: !debug && !to_file,
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}
