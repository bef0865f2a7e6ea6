//! Structured logs: one JSON object per line on stdout (journald under systemd) and, with
//! `log.dir` set, in daily files there too.
//!
//! The field names are an interface for operators' log pipelines (SPEC §11): `ts`, `level`,
//! `msg`, then the event's own fields (`request_id`, `route`, `status`, `latency_ms`, `event`, …).
//! Writing happens on background threads so a slow consumer never stalls a request.

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};

use crate::config::LogConfig;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// File names in `log.dir`: `sofiia-console.YYYY-MM-DD.log`.
const FILE_PREFIX: &str = "sofiia-console";
const FILE_SUFFIX: &str = "log";

/// Installs the JSON logger. Keep the guards alive: dropping them flushes and stops the
/// writers.
pub fn init(log: &LogConfig) -> Result<Vec<WorkerGuard>, String> {
    let (stdout, stdout_guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::builder()
        .parse(&log.level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(dir) = &log.dir else {
        tracing_subscriber::registry()
            .with(JsonLines { writer: stdout }.with_filter(filter))
            .init();
        return Ok(vec![stdout_guard]);
    };
    let files = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix(FILE_SUFFIX)
        .max_log_files(log.max_files)
        .build(dir)
        .map_err(|e| format!("log.dir {}: {e}", dir.display()))?;
    let (files, files_guard) = tracing_appender::non_blocking(files);
    tracing_subscriber::registry()
        .with(
            JsonLines {
                writer: stdout.and(files),
            }
            .with_filter(filter),
        )
        .init();
    Ok(vec![stdout_guard, files_guard])
}

struct JsonLines<W> {
    writer: W,
}

/// A span's fields, kept so that events inside it (a request's, say) carry them.
struct SpanFields(Map<String, Value>);

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'s> LookupSpan<'s>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut FieldVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut FieldVisitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        fields.insert(
            "ts".into(),
            humantime::format_rfc3339_millis(SystemTime::now())
                .to_string()
                .into(),
        );
        fields.insert(
            "level".into(),
            event
                .metadata()
                .level()
                .as_str()
                .to_ascii_lowercase()
                .into(),
        );
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                    fields.extend(span_fields.clone());
                }
            }
        }
        event.record(&mut FieldVisitor(&mut fields));
        if let Ok(mut line) = serde_json::to_vec(&fields) {
            line.push(b'\n');
            // Nowhere to report a failed log write; the line is dropped.
            let _ = self.writer.make_writer().write_all(&line);
        }
    }
}

struct FieldVisitor<'m>(&'m mut Map<String, Value>);

impl FieldVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            other => other,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}
