//! A workflow's DAG indexed for scheduling: [`ExecutionPlan`].

use crate::package::{TaskMeta, WorkflowMeta};
use std::collections::HashMap;

/// A workflow's DAG with the indexes scheduling needs.
#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    /// The workflow.
    pub workflow: WorkflowMeta,
    index: HashMap<String, usize>,
    dependents: Vec<Vec<usize>>,
}

impl ExecutionPlan {
    /// Index `workflow`.
    pub fn new(workflow: WorkflowMeta) -> Self {
        let index: HashMap<String, usize> = workflow
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut dependents = vec![Vec::new(); workflow.tasks.len()];
        for (i, t) in workflow.tasks.iter().enumerate() {
            for d in &t.dependencies {
                if let Some(&j) = index.get(d) {
                    dependents[j].push(i);
                }
            }
        }
        Self {
            workflow,
            index,
            dependents,
        }
    }

    /// The task with id `id`.
    pub fn task(&self, id: &str) -> Option<&TaskMeta> {
        self.index.get(id).map(|&i| &self.workflow.tasks[i])
    }

    /// The tasks that depend on `id`.
    pub fn dependents(&self, id: &str) -> impl Iterator<Item = &TaskMeta> {
        self.index
            .get(id)
            .map(|&i| self.dependents[i].as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&j| &self.workflow.tasks[j])
    }

    /// Tasks nothing depends on, in declaration order.
    pub fn leaves(&self) -> impl Iterator<Item = &TaskMeta> {
        self.workflow
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| self.dependents[*i].is_empty())
            .map(|(_, t)| t)
    }
}
