//! A guest's stdout and stderr, captured into one byte budget that its log
//! records share.

use super::limits::CallLabels;
use crate::guest_text::Escaped;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which captured stream.
#[derive(Debug, Clone, Copy)]
pub(super) enum Which {
    Stdout,
    Stderr,
}

/// Captured stdout and stderr, with one byte budget that log records share.
#[derive(Clone)]
pub(crate) struct OutputCapture(Arc<Mutex<OutputInner>>);

struct OutputInner {
    cap: usize,
    used: usize,
    exceeded: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl OutputCapture {
    pub(super) fn new(cap: usize) -> Self {
        Self(Arc::new(Mutex::new(OutputInner {
            cap,
            used: 0,
            exceeded: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })))
    }

    /// Charge `n` bytes; false (and the exceeded mark) when over budget.
    pub(super) fn charge(&self, n: usize) -> bool {
        let mut inner = self.0.lock().expect("output lock");
        if inner.used.saturating_add(n) > inner.cap {
            inner.exceeded = true;
            false
        } else {
            inner.used += n;
            true
        }
    }

    fn append(&self, which: Which, bytes: &[u8]) -> bool {
        let mut inner = self.0.lock().expect("output lock");
        if inner.used.saturating_add(bytes.len()) > inner.cap {
            inner.exceeded = true;
            return false;
        }
        inner.used += bytes.len();
        match which {
            Which::Stdout => inner.stdout.extend_from_slice(bytes),
            Which::Stderr => inner.stderr.extend_from_slice(bytes),
        }
        true
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
