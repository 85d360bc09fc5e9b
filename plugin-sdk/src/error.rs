//! How a task reports failure.

use crate::ContextError;
use std::fmt;

/// Whether retrying a failed task can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskErrorKind {
    /// A later attempt may succeed: a timeout upstream, a busy service.
    Transient,
    /// A later attempt will fail the same way: bad input, a bug.
    Permanent,
}

/// A task's failure: its kind decides whether the host retries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// Transient or permanent.
    pub kind: TaskErrorKind,
    /// What went wrong, for the execution's record.
    pub message: String,
}

impl TaskError {
    /// A failure worth retrying, as the task's retry policy allows.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::Transient,
            message: message.into(),
        }
    }

    /// A failure that no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: TaskErrorKind::Permanent,
            message: message.into(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TaskErrorKind::Transient => "transient",
            TaskErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind} error: {}", self.message)
    }
}

impl std::error::Error for TaskError {}

/// A context error is a bug in the workflow or bad input: permanent.
impl From<ContextError> for TaskError {
    fn from(e: ContextError) -> Self {
        TaskError::permanent(e.to_string())
    }
}
