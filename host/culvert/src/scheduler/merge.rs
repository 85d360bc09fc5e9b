//! Context merging, linear in the size of what it merges and bounded by a
//! byte limit: [`BoundedMerge`].

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// Merge `next` into `base` with cloacina's rules (see the module docs), in
/// time linear in the size of both: arrays are unioned through a hash index
/// of `base`'s items, not by scanning `base` for each item of `next`.
#[cfg(test)]
pub(super) fn merge_into(base: &mut Map<String, Value>, next: &Map<String, Value>) {
    let hasher = RandomState::new();
    merge_map(base, next, &hasher);
}

fn merge_map(base: &mut Map<String, Value>, next: &Map<String, Value>, hasher: &RandomState) {
    for (k, v) in next {
        match base.get_mut(k) {
            Some(existing) => merge_value(existing, v, hasher),
            None => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_value(existing: &mut Value, next: &Value, hasher: &RandomState) {
    match (existing, next) {
        (Value::Object(a), Value::Object(b)) => merge_map(a, b, hasher),
        (Value::Array(a), Value::Array(b)) => {
            // Items by hash; equal hashes are compared in full, so a
            // collision costs time, never correctness. The hasher's keys
            // are random per merge: a guest cannot aim for collisions.
            let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(a.len() + b.len());
            for (i, item) in a.iter().enumerate() {
                seen.entry(value_hash(item, hasher)).or_default().push(i);
            }
            for item in b {
                let h = value_hash(item, hasher);
                let slot = seen.entry(h).or_default();
                if slot.iter().any(|&i| a[i] == *item) {
                    continue;
                }
                slot.push(a.len());
                a.push(item.clone());
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// A hash of a JSON value that agrees with `Value`'s equality: an object's
/// entries are combined without regard to their order.
fn value_hash(v: &Value, hasher: &RandomState) -> u64 {
    let mut h = hasher.build_hasher();
    match v {
        Value::Null => 0u8.hash(&mut h),
        Value::Bool(b) => (1u8, b).hash(&mut h),
        Value::Number(n) => (2u8, n.to_string()).hash(&mut h),
        Value::String(s) => (3u8, s).hash(&mut h),
        Value::Array(items) => {
            (4u8, items.len()).hash(&mut h);
            for item in items {
                value_hash(item, hasher).hash(&mut h);
            }
        }
        Value::Object(map) => {
            let mut sum = 0u64;
            for (k, v) in map {
                let mut e = hasher.build_hasher();
                k.hash(&mut e);
                value_hash(v, hasher).hash(&mut e);
                sum = sum.wrapping_add(e.finish());
            }
            (5u8, map.len(), sum).hash(&mut h);
        }
    }
    h.finish()
}

/// The size of `v` as compact JSON, without building the text.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// A merge grew past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextTooLarge {
    /// The merged size reached, in bytes of compact JSON (at least this
    /// much: the merge stops as soon as it is over).
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

/// A merge of many contexts that never grows past `limit` bytes (as
/// compact JSON), fed one context at a time so that only the merge so far
/// and the next context are in memory.
///
/// Checking is cheap while the sizes fed in add up to at most the limit:
/// a merge is never larger than the sum of its parts. Past that, the merge
/// is measured after each step and refused as soon as it is over.
#[derive(Debug)]
pub struct BoundedMerge {
    value: Map<String, Value>,
    /// An upper bound of `value`'s size.
    upper: usize,
    limit: usize,
    hasher: RandomState,
}

impl BoundedMerge {
    /// An empty merge that may grow to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            value: Map::new(),
            upper: 2,
            limit,
            hasher: RandomState::new(),
        }
    }

    /// Merge `next`, whose compact JSON is `next_len` bytes long, in.
    ///
    /// # Errors
    /// [`ContextTooLarge`] when the merge is now over the limit; the merge
    /// is then left in an unspecified state.
    pub fn add(
        &mut self,
        next: &Map<String, Value>,
        next_len: usize,
    ) -> Result<(), ContextTooLarge> {
        merge_map(&mut self.value, next, &self.hasher);
        self.upper = self.upper.saturating_add(next_len);
        if self.upper > self.limit {
            let exact = json_len(&self.value);
            self.upper = exact;
            if exact > self.limit {
                return Err(ContextTooLarge {
                    size: exact,
                    limit: self.limit,
                });
            }
        }
        Ok(())
    }

    /// The merged context.
    pub fn finish(self) -> Map<String, Value> {
        self.value
    }
}
