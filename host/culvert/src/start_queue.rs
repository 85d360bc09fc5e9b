//! Group commit of execution starts: starts that arrive while another
//! group is being written wait, and are written together in the next
//! transaction ([`ExecutionStore::create_executions`]).
//!
//! A lone start is written at once (a group of one); under load (many API
//! clients starting at the same time) a group holds every start that came
//! in during the previous transaction, so the transaction, the tenant's
//! lock and its quota count are paid once per group, not once per start.
//!
//! The group is written by a spawned task, not by the caller: a client
//! that hangs up must not stop the starts of the others in its group.
//!
//! [`ExecutionStore::create_executions`]: crate::store::ExecutionStore::create_executions

use crate::access::AuditEntry;
use crate::scheduler::ExecutionPlan;
use crate::store::{ExecutionRow, NewExecution, Store, StoreError};
use crate::tenants::TenantLimits;
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use uuid::Uuid;

/// The most starts written in one transaction.
const MAX_GROUP: usize = 64;

/// A start to write: what [`NewExecution`] borrows, owned, so that it can
/// wait in the queue.
#[derive(Debug)]
pub(crate) struct Start {
    pub tenant: String,
    pub package_id: Uuid,
    pub package_name: String,
    pub package_version: String,
    pub content_hash: String,
    pub plan: ExecutionPlan,
    pub context: Map<String, Value>,
    pub limits: TenantLimits,
    pub idempotency_key: Option<String>,
    pub audit: Option<AuditEntry>,
}

impl Start {
    /// As the store takes it.
    fn as_new(&self) -> NewExecution<'_> {
        NewExecution {
            tenant: &self.tenant,
            package_id: self.package_id,
            package_name: &self.package_name,
            package_version: &self.package_version,
            content_hash: &self.content_hash,
            plan: &self.plan,
            context: &self.context,
            limits: &self.limits,
            idempotency_key: self.idempotency_key.as_deref(),
            audit: self.audit.as_ref(),
            schedule: None,
        }
    }
}

/// A queued start and where its result goes.
type Waiting = (Start, oneshot::Sender<Result<ExecutionRow, StoreError>>);

/// The starts waiting for the next group, and whether a task is writing.
#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    writing: bool,
}

/// Starts waiting to be written, and the store they go to.
pub(crate) struct StartQueue {
    store: Arc<dyn Store>,
    queue: Arc<Mutex<Queue>>,
}

impl StartQueue {
    /// An empty queue in front of `store`.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            queue: Arc::default(),
        }
    }

    /// Write `start`, with whatever other starts are waiting: its own
    /// result (a quota refusal of another start of the group is not this
    /// one's).
    pub(crate) async fn start(&self, start: Start) -> Result<ExecutionRow, StoreError> {
        let (reply, result) = oneshot::channel();
        let spawn = {
            let mut q = self.queue.lock().expect("start queue lock");
            q.waiting.push((start, reply));
            !std::mem::replace(&mut q.writing, true)
        };
        if spawn {
            let writer = Writer {
                store: self.store.clone(),
                queue: self.queue.clone(),
            };
            tokio::spawn(writer.run());
        }
        result.await.map_err(|_| {
            StoreError::Other("the start was lost: the task writing it stopped".into())
        })?
    }
}

/// The task that writes groups until the queue is empty.
struct Writer {
    store: Arc<dyn Store>,
    queue: Arc<Mutex<Queue>>,
}

impl Writer {
    async fn run(self) {
        loop {
            let group: Vec<Waiting> = {
                let mut q = self.queue.lock().expect("start queue lock");
                if q.waiting.is_empty() {
                    q.writing = false;
                    return;
                }
                let n = q.waiting.len().min(MAX_GROUP);
                q.waiting.drain(..n).collect()
            };
            let batch: Vec<NewExecution<'_>> = group.iter().map(|(s, _)| s.as_new()).collect();
            let results = self.store.create_executions(&batch).await;
            drop(batch);
            match results {
                Ok(results) => {
                    for ((_, reply), result) in group.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    for (_, reply) in group {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

impl Drop for Writer {
    /// If the writer panicked, the next start spawns a new one; what was
    /// waiting fails (its senders are dropped) rather than waiting forever.
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut q) = self.queue.lock()
        {
            q.writing = false;
            q.waiting.clear();
        }
    }
}
