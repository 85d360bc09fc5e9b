//! The task context: a JSON object passed from task to task.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;

/// Which attempt of which execution a task is running in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The workflow execution's id (a UUID string).
    pub execution_id: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub number: u32,
    /// The most attempts this task will get.
    pub max_attempts: u32,
}

impl Attempt {
    /// Whether a failure now would be final.
    pub fn is_last(&self) -> bool {
        self.number >= self.max_attempts
    }
}

/// Why a context operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextError {
    /// [`Context::get`] or [`Context::update`] on a key that is not there.
    KeyNotFound(String),
    /// [`Context::insert`] on a key that is already there.
    KeyExists(String),
    /// The value could not be converted to or from the requested type.
    Type {
        /// The key whose value did not fit.
        key: String,
        /// serde's explanation.
        message: String,
    },
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextError::KeyNotFound(k) => write!(f, "context key '{k}' not found"),
            ContextError::KeyExists(k) => write!(f, "context key '{k}' already exists"),
            ContextError::Type { key, message } => {
                write!(f, "context key '{key}' has the wrong type: {message}")
            }
        }
    }
}

impl std::error::Error for ContextError {}

/// The data a task reads and writes: a JSON object.
///
/// A task with no dependencies receives the execution's initial context. A
/// task with dependencies receives the merge of their output contexts (see
/// the host's docs/EXECUTION.md for the merge rules). Whatever the task leaves
/// in the context is its output.
///
/// As in cloacina, [`insert`](Self::insert) refuses to overwrite and
/// [`update`](Self::update) refuses to create, so a typo in a key name shows
/// up as an error instead of silently forking the data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    data: Map<String, Value>,
    attempt: Option<Attempt>,
}

impl Context {
    /// An empty context, outside any execution.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context over `data`, in the given attempt.
    pub fn from_parts(data: Map<String, Value>, attempt: Attempt) -> Self {
        Self {
            data,
            attempt: Some(attempt),
        }
    }

    /// The value at `key`, converted to `T`.
    ///
    /// # Errors
    /// [`ContextError::KeyNotFound`] when the key is absent, and
    /// [`ContextError::Type`] when the value does not deserialize into `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, ContextError> {
        let value = self
            .data
            .get(key)
            .ok_or_else(|| ContextError::KeyNotFound(key.to_string()))?;
        T::deserialize(value).map_err(|e| ContextError::Type {
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    /// The value at `key` converted to `T`, or `default` when the key is
    /// absent.
    ///
    /// # Errors
    /// [`ContextError::Type`] when the key is present but does not
    /// deserialize into `T`.
    pub fn get_or<T: DeserializeOwned>(&self, key: &str, default: T) -> Result<T, ContextError> {
        if self.data.contains_key(key) {
            self.get(key)
        } else {
            Ok(default)
        }
    }

    /// The raw JSON value at `key`.
    pub fn get_value(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }

    /// Add a new key.
    ///
    /// # Errors
    /// [`ContextError::KeyExists`] when the key is already present, and
    /// [`ContextError::Type`] when `value` does not serialize to JSON.
    pub fn insert<T: Serialize>(&mut self, key: &str, value: T) -> Result<(), ContextError> {
        if self.data.contains_key(key) {
            return Err(ContextError::KeyExists(key.to_string()));
        }
        let value = to_value(key, value)?;
        self.data.insert(key.to_string(), value);
        Ok(())
    }

    /// Replace the value of an existing key.
    ///
    /// # Errors
    /// [`ContextError::KeyNotFound`] when the key is absent, and
    /// [`ContextError::Type`] when `value` does not serialize to JSON.
    pub fn update<T: Serialize>(&mut self, key: &str, value: T) -> Result<(), ContextError> {
        if !self.data.contains_key(key) {
            return Err(ContextError::KeyNotFound(key.to_string()));
        }
        let value = to_value(key, value)?;
        self.data.insert(key.to_string(), value);
        Ok(())
    }

    /// Insert or replace, whichever applies.
    ///
    /// # Errors
    /// [`ContextError::Type`] when `value` does not serialize to JSON.
    pub fn set<T: Serialize>(&mut self, key: &str, value: T) -> Result<(), ContextError> {
        let value = to_value(key, value)?;
        self.data.insert(key.to_string(), value);
        Ok(())
    }

    /// Remove a key, returning its value if it was there.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.data.remove(key)
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> Vec<&str> {
        self.data.keys().map(String::as_str).collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the context has no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Which attempt this is. Outside an execution (in a unit test, say) it
    /// is attempt 1 of 1 of execution `""`.
    pub fn attempt(&self) -> Attempt {
        self.attempt.clone().unwrap_or(Attempt {
            execution_id: String::new(),
            number: 1,
            max_attempts: 1,
        })
    }

    /// The whole context as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.data
    }

    /// Consume the context, keeping its data.
    pub fn into_map(self) -> Map<String, Value> {
        self.data
    }
}

impl From<Map<String, Value>> for Context {
    fn from(data: Map<String, Value>) -> Self {
        Self {
            data,
            attempt: None,
        }
    }
}

fn to_value<T: Serialize>(key: &str, value: T) -> Result<Value, ContextError> {
    serde_json::to_value(value).map_err(|e| ContextError::Type {
        key: key.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_refuses_existing_keys_and_update_refuses_missing_ones() {
        let mut ctx = Context::new();
        ctx.insert("a", 1).unwrap();
        assert_eq!(ctx.insert("a", 2), Err(ContextError::KeyExists("a".into())));
        assert_eq!(
            ctx.update("b", 2),
            Err(ContextError::KeyNotFound("b".into()))
        );
        ctx.update("a", 3).unwrap();
        assert_eq!(ctx.get::<i32>("a").unwrap(), 3);
    }

    #[test]
    fn get_reports_type_mismatches() {
        let mut ctx = Context::new();
        ctx.insert("s", "text").unwrap();
        assert!(matches!(
            ctx.get::<u32>("s"),
            Err(ContextError::Type { .. })
        ));
        assert_eq!(ctx.get_or::<u32>("missing", 7).unwrap(), 7);
    }

    #[test]
    fn remove_and_keys() {
        let mut ctx = Context::new();
        ctx.insert("b", true).unwrap();
        ctx.insert("a", false).unwrap();
        assert_eq!(ctx.keys(), vec!["a", "b"]);
        assert_eq!(ctx.remove("a"), Some(Value::Bool(false)));
        assert_eq!(ctx.remove("a"), None);
        assert_eq!(ctx.len(), 1);
    }
}
