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
        *metadata.level() <= self.max_level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() > self.max_level {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
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

/// Installs the global logger: to the `--log` file, or to stderr with `--debug`.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let (out, format): (Box<dyn Write + Send>, LogFormat) = match log {
        Some(path) => (
            Box::new(OpenOptions::new().create(true).append(true).open(path)?),
            format,
        ),
        None => (Box::new(std::io::stderr()), LogFormat::Text),
    };
    // Without --log, main prints the error itself; only --debug adds lines.
    let max_level = if debug {
        Level::DEBUG
    } else if log.is_some() {
        Level::INFO
    } else {
        return Ok(());
    };
    let layer = RuncLogLayer {
        out: Mutex::new(out),
        format,
        max_level,
    };
    // libcontainer logs a lot at debug; keep its noise out unless --debug.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}
