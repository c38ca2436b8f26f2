//! The runtime library, the dumper and libcontainer log through `tracing`;
//! containerd-shim's logger (the `log` facade, writing to the `log` fifo that
//! containerd copies into its own log) sees none of it without a subscriber.
//! This one forwards every tracing event to the `log` facade, at the level
//! containerd-shim configured (`--debug`, `RUST_LOG`-like `default_log_level`),
//! so dump timings and warnings reach containerd's log.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Installs the subscriber; events before containerd-shim sets up its
/// logger (or when it has none) are dropped, as `log` drops them. Not
/// `try_init`: that would also make tracing the `log` facade's logger, and
/// containerd-shim could not install its own.
pub fn init() {
    let subscriber = tracing_subscriber::registry().with(ToLog);
    if let Err(e) = tracing::subscriber::set_global_default(subscriber) {
        eprintln!("containerd-shim-godwit-v2: no tracing subscriber: {e}");
    }
}

struct ToLog;

/// `log`'s level of a tracing level.
pub fn log_level(level: &Level) -> log::Level {
    match *level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

/// An event's message followed by its other fields, `key=value` each.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    fn push(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if name == "message" {
            let _ = self.message.write_fmt(value);
        } else {
            let _ = write!(self.fields, " {name}={value}");
        }
    }

    fn text(&self) -> String {
        format!("{}{}", self.message, self.fields)
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), format_args!("{value}"));
    }
}

impl<S: Subscriber> Layer<S> for ToLog {
    // Asked at every event: containerd-shim sets `log`'s level after some
    // callsites may have registered.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        log_level(metadata.level()) <= log::max_level()
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Line::default();
        event.record(&mut line);
        let text = line.text();
        log::logger().log(
            &log::Record::builder()
                .level(log_level(metadata.level()))
                .target(metadata.target())
                .module_path(metadata.module_path())
                .file(metadata.file())
                .line(metadata.line())
                .args(format_args!("{text}"))
                .build(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_then_fields() {
        let mut line = Line::default();
        line.push("id", format_args!("{}", "c1"));
        line.push("message", format_args!("checkpointed"));
        line.push("processes", format_args!("{}", 3));
        assert_eq!(line.text(), "checkpointed id=c1 processes=3");
    }

    #[test]
    fn levels_map_one_to_one() {
        assert_eq!(log_level(&Level::WARN), log::Level::Warn);
        assert_eq!(log_level(&Level::TRACE), log::Level::Trace);
        assert!(log_level(&Level::DEBUG) > log::LevelFilter::Info);
    }
}
