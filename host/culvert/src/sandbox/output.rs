//! A guest's stdout and stderr, captured into one byte budget that its log
//! records share; and what the guest said, kept for storage as an ordered
//! list of [`LogRecord`]s ([`TaskLogs`]), capped at [`TASK_LOG_BYTES`].

use super::limits::CallLabels;
use crate::guest_text::Escaped;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which captured stream.
#[derive(Debug, Clone, Copy)]
pub(super) enum Which {
    Stdout = 0,
    Stderr = 1,
}

/// The most bytes of [`LogRecord`]s kept (and stored) per attempt: 64 KiB,
/// and never more than the call's output budget
/// ([`SandboxLimits::output_bytes`](super::SandboxLimits::output_bytes)).
/// Each record counts its text (message, or line; field names and values)
/// plus [`LOG_RECORD_OVERHEAD`]. The first records up to the cap are kept;
/// everything after is dropped and counted ([`TaskLogs::dropped_bytes`]).
pub const TASK_LOG_BYTES: usize = 64 * 1024;

/// Room the host's own records (outbound requests) have beyond the stored
/// log's cap: enough for the records of a call's requests at the default
/// limits.
const HOST_RECORD_RESERVE: usize = 64 * 1024;

/// What each kept record counts on top of its text, so that a flood of
/// empty records is bounded too.
pub const LOG_RECORD_OVERHEAD: usize = 32;

/// Where a [`LogRecord`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// A call of the contract's `log` import.
    Log,
    /// A line the guest wrote to stdout.
    Stdout,
    /// A line the guest wrote to stderr.
    Stderr,
    /// A record the host wrote about the call (an outbound HTTP request):
    /// never the guest's words, so a guest cannot forge one.
    Host,
}

impl LogStream {
    /// `log`, `stdout`, `stderr` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Log => "log",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Host => "host",
        }
    }
}

/// One thing a guest said: a log record, or a line of stdout or stderr.
/// Every string is the guest's, unescaped: escape it before printing it
/// (see [`escape_guest_text`](crate::escape_guest_text)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// `log`, `stdout` or `stderr`.
    pub stream: LogStream,
    /// A log record's level (`trace`, `debug`, `info`, `warn`, `error`);
    /// `null` for a line of stdout or stderr.
    pub level: Option<String>,
    /// The message, or the line (without its newline; invalid UTF-8
    /// replaced).
    pub message: String,
    /// A log record's fields, `[name, value]` in the guest's order; empty
    /// for a line.
    pub fields: Vec<(String, String)>,
}

/// What a guest said during one call, in order, capped at
/// [`TASK_LOG_BYTES`] (or the call's output budget, if smaller).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLogs {
    /// The records kept, in the order the guest produced them (a line of
    /// stdout or stderr counts when its newline arrives, or at the end of
    /// the call).
    pub records: Vec<LogRecord>,
    /// Bytes the kept records count against the cap.
    pub bytes: u64,
    /// Whether anything was dropped: past the cap, or refused by the output
    /// budget.
    pub truncated: bool,
    /// Bytes of text dropped.
    pub dropped_bytes: u64,
}

/// Builds a [`TaskLogs`] within its cap. A partial line waiting for its
/// newline is held only while it still fits, so nothing here holds more
/// than the cap.
struct RecordLog {
    cap: usize,
    logs: TaskLogs,
    /// Once a record did not fit, every later one is dropped too: what is
    /// kept is a prefix of what the guest said.
    full: bool,
    /// The partial line of stdout and of stderr.
    pending: [Vec<u8>; 2],
}

impl RecordLog {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            logs: TaskLogs::default(),
            full: false,
            pending: [Vec::new(), Vec::new()],
        }
    }

    fn used(&self) -> usize {
        self.logs.bytes as usize
    }

    fn drop_bytes(&mut self, n: usize) {
        self.full = true;
        self.logs.truncated = true;
        self.logs.dropped_bytes = self.logs.dropped_bytes.saturating_add(n as u64);
    }

    /// Keep `record` of `size` text bytes if it fits.
    fn push(&mut self, size: usize, record: impl FnOnce() -> LogRecord) {
        let cost = size.saturating_add(LOG_RECORD_OVERHEAD);
        if self.full || self.used().saturating_add(cost) > self.cap {
            self.drop_bytes(size);
            return;
        }
        self.logs.bytes += cost as u64;
        self.logs.records.push(record());
    }

    /// A record with a level: the guest's (`Log`) or the host's (`Host`).
    fn record(
        &mut self,
        stream: LogStream,
        level: &str,
        message: &str,
        fields: &[(String, String)],
    ) {
        let size = message.len()
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        if stream == LogStream::Host {
            // The host's records have room of their own past the cap, and
            // are kept after the guest's output filled the log: a guest
            // cannot crowd them out.
            let cost = size.saturating_add(LOG_RECORD_OVERHEAD);
            if self.used().saturating_add(cost) <= self.cap + HOST_RECORD_RESERVE {
                self.logs.bytes += cost as u64;
                self.logs.records.push(LogRecord {
                    stream,
                    level: Some(level.to_string()),
                    message: message.to_string(),
                    fields: fields.to_vec(),
                });
            } else {
                self.logs.truncated = true;
                self.logs.dropped_bytes = self.logs.dropped_bytes.saturating_add(size as u64);
            }
            return;
        }
        self.push(size, || LogRecord {
            stream,
            level: Some(level.to_string()),
            message: message.to_string(),
            fields: fields.to_vec(),
        });
    }

    fn stream(&mut self, which: Which, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.extend_line(which, &rest[..i]);
            self.end_line(which);
            rest = &rest[i + 1..];
        }
        self.extend_line(which, rest);
    }

    fn extend_line(&mut self, which: Which, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        let held = self.pending[which as usize].len();
        if self.full || self.used() + LOG_RECORD_OVERHEAD + held + piece.len() > self.cap {
            self.pending[which as usize] = Vec::new();
            self.drop_bytes(held + piece.len());
            return;
        }
        self.pending[which as usize].extend_from_slice(piece);
    }

    fn end_line(&mut self, which: Which) {
        let line = std::mem::take(&mut self.pending[which as usize]);
        if self.full {
            // What it held when another record filled the log.
            self.drop_bytes(line.len());
            return;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        self.push(text.len(), || LogRecord {
            stream: match which {
                Which::Stdout => LogStream::Stdout,
                Which::Stderr => LogStream::Stderr,
            },
            level: None,
            message: text,
            fields: Vec::new(),
        });
    }

    /// The records, with any partial line ended.
    fn finish(&mut self) -> TaskLogs {
        for which in [Which::Stdout, Which::Stderr] {
            if !self.pending[which as usize].is_empty() {
                self.end_line(which);
            }
        }
        std::mem::take(&mut self.logs)
    }
}

/// Captured stdout and stderr, with one byte budget that log records share;
/// and the records kept for storage.
#[derive(Clone)]
pub(crate) struct OutputCapture(Arc<Mutex<OutputInner>>);

struct OutputInner {
    cap: usize,
    used: usize,
    exceeded: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    records: RecordLog,
}

impl OutputCapture {
    /// A capture with an output budget of `cap` bytes; it keeps records up
    /// to [`TASK_LOG_BYTES`] or `cap`, whichever is smaller.
    pub(super) fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(OutputInner {
            cap,
            used: 0,
            exceeded: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
            records: RecordLog::new(cap.min(TASK_LOG_BYTES)),
        })))
    }

    /// A log record of `size` bytes: charged to the budget (false, and the
    /// exceeded mark, when over it) and kept, if it fits, for storage.
    pub(super) fn log(
        &self,
        size: usize,
        level: &str,
        message: &str,
        fields: &[(String, String)],
    ) -> bool {
        let mut inner = self.0.lock().expect("output lock");
        if inner.used.saturating_add(size) > inner.cap {
            inner.exceeded = true;
            inner.records.drop_bytes(size);
            false
        } else {
            inner.used += size;
            inner.records.record(LogStream::Log, level, message, fields);
            true
        }
    }

    /// A record the host writes about the call: kept for storage within
    /// the log's cap plus a reserve of its own, whatever the guest wrote
    /// before; not charged to the guest's output budget. There is at most
    /// one per request the call may make, and one for the first over that.
    pub(crate) fn host_record(&self, level: &str, message: &str, fields: &[(String, String)]) {
        let mut inner = self.0.lock().expect("output lock");
        inner
            .records
            .record(LogStream::Host, level, message, fields);
    }

    fn append(&self, which: Which, bytes: &[u8]) -> bool {
        let mut inner = self.0.lock().expect("output lock");
        if inner.used.saturating_add(bytes.len()) > inner.cap {
            inner.exceeded = true;
            inner.records.drop_bytes(bytes.len());
            return false;
        }
        inner.used += bytes.len();
        match which {
            Which::Stdout => inner.stdout.extend_from_slice(bytes),
            Which::Stderr => inner.stderr.extend_from_slice(bytes),
        }
        inner.records.stream(which, bytes);
        true
    }

    /// The records kept so far (any partial line ended), taken out.
    pub(crate) fn take_logs(&self) -> TaskLogs {
        self.0.lock().expect("output lock").records.finish()
    }

    /// Whether the budget was exceeded.
    pub(crate) fn exceeded(&self) -> bool {
        self.0.lock().expect("output lock").exceeded
    }

    /// The message of a Rust panic printed to stderr (`panicked at
    /// FILE:LINE:COL:\nMESSAGE`), if any.
    pub(crate) fn panic_on_stderr(&self) -> Option<String> {
        let inner = self.0.lock().expect("output lock");
        let text = String::from_utf8_lossy(&inner.stderr);
        let at = text.find("panicked at ")?;
        let rest = &text[at + "panicked at ".len()..];
        let (location, message) = rest.split_once('\n').unwrap_or((rest, ""));
        let message: String = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(4096)
            .collect();
        Some(format!(
            "{message} (at {})",
            location
                .trim_end_matches(':')
                .chars()
                .take(256)
                .collect::<String>()
        ))
    }

    /// The budget in bytes.
    pub(crate) fn cap(&self) -> usize {
        self.0.lock().expect("output lock").cap
    }

    /// Send what was captured to `tracing`, line by line, each line's
    /// control characters escaped (see [`crate::guest_text`]), and clear it.
    pub(crate) fn flush_to_tracing(&self, labels: &CallLabels) {
        let (stdout, stderr) = {
            let mut inner = self.0.lock().expect("output lock");
            (
                std::mem::take(&mut inner.stdout),
                std::mem::take(&mut inner.stderr),
            )
        };
        for (stream, bytes) in [("stdout", stdout), ("stderr", stderr)] {
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                tracing::info!(
                    target: "culvert::guest",
                    package = %labels.package,
                    workflow = %labels.workflow,
                    task = %labels.task,
                    execution = %labels.execution,
                    stream,
                    "{}",
                    Escaped(line)
                );
            }
        }
    }
}

/// A guest's stdout or stderr.
pub(super) struct CapturedStream {
    pub(super) capture: OutputCapture,
    pub(super) which: Which,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(CapturedStream {
            capture: self.capture.clone(),
            which: self.which,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CapturedStream {
            capture: self.capture.clone(),
            which: self.which,
        })
    }
}

pub(super) fn over_budget(capture: &OutputCapture) -> String {
    format!(
        "output limit of {} bytes exceeded (stdout, stderr and log together)",
        capture.cap()
    )
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.capture.append(self.which, &bytes) {
            Ok(())
        } else {
            Err(StreamError::trap(&over_budget(&self.capture)))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let result = if self.capture.append(self.which, buf) {
            Ok(buf.len())
        } else {
            Err(std::io::Error::other(over_budget(&self.capture)))
        };
        std::task::Poll::Ready(result)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_order_and_split_lines() {
        let capture = OutputCapture::new(1 << 20);
        assert!(capture.append(Which::Stdout, b"one\ntw"));
        assert!(capture.log(5, "info", "hello", &[]));
        assert!(capture.append(Which::Stdout, b"o\n"));
        assert!(capture.append(Which::Stderr, b"tail without newline"));
        let logs = capture.take_logs();
        let texts: Vec<(&str, &str)> = logs
            .records
            .iter()
            .map(|r| (r.stream.as_str(), r.message.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                ("stdout", "one"),
                ("log", "hello"),
                ("stdout", "two"),
                ("stderr", "tail without newline")
            ]
        );
        assert!(!logs.truncated);
        assert_eq!(
            logs.bytes as usize,
            3 + 5 + 3 + 20 + 4 * LOG_RECORD_OVERHEAD
        );
    }

    #[test]
    fn records_stop_at_the_cap_and_count_what_was_dropped() {
        let capture = OutputCapture::new(1 << 20);
        let line = [b'x'; 99];
        for _ in 0..2000 {
            assert!(capture.append(Which::Stdout, &line));
            assert!(capture.append(Which::Stdout, b"\n"));
        }
        // A small record after the cap is dropped too: what is kept is a
        // prefix.
        assert!(capture.log(1, "info", "y", &[]));
        let logs = capture.take_logs();
        let kept = TASK_LOG_BYTES / (99 + LOG_RECORD_OVERHEAD);
        assert_eq!(logs.records.len(), kept);
        assert!(logs.bytes as usize <= TASK_LOG_BYTES);
        assert!(logs.truncated);
        assert_eq!(logs.dropped_bytes as usize, (2000 - kept) * 99 + 1);
    }

    #[test]
    fn a_line_without_a_newline_is_not_held_past_the_cap() {
        let capture = OutputCapture::new(16 << 20);
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..100 {
            assert!(capture.append(Which::Stderr, &chunk));
            let inner = capture.0.lock().unwrap();
            assert!(inner.records.pending[1].len() <= TASK_LOG_BYTES);
        }
        let logs = capture.take_logs();
        assert!(logs.records.is_empty());
        assert!(logs.truncated);
        assert_eq!(logs.dropped_bytes, 100 * 64 * 1024);
    }

    #[test]
    fn the_cap_is_never_more_than_the_output_budget() {
        let capture = OutputCapture::new(100);
        assert!(capture.log(40, "warn", &"m".repeat(40), &[]));
        // Fits the budget (80 of 100) but not the records' cap (40 + 32
        // already kept, 100 at most).
        assert!(capture.log(40, "warn", &"n".repeat(40), &[]));
        // Over the budget: refused, and counted as dropped.
        assert!(!capture.log(40, "warn", &"o".repeat(40), &[]));
        let logs = capture.take_logs();
        assert_eq!(logs.records.len(), 1);
        assert_eq!(logs.records[0].level.as_deref(), Some("warn"));
        assert!(logs.truncated);
        assert_eq!(logs.dropped_bytes, 80);
    }
}
