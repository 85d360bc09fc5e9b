//! Compile-time checks of a workflow's DAG: unique ids, known
//! dependencies, no cycles, and trigger rules that only name dependencies.

use crate::TaskDef;
use std::collections::HashMap;

/// Check the tasks of workflow `name`, combining every error found.
/// `rejected` holds the ids of tasks whose `#[task]` was already reported as
/// invalid; a dependency on one of them is not reported again as unknown.
pub(crate) fn check(name: &str, tasks: &[TaskDef], rejected: &[String]) -> syn::Result<()> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |e: syn::Error| match &mut errors {
        Some(existing) => existing.combine(e),
        None => errors = Some(e),
    };

    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        if let Some(&first) = index.get(task.id.as_str()) {
            push(syn::Error::new(
                task.id_span,
                format!(
                    "duplicate task id '{}' in workflow '{name}' (also used by fn `{}`)",
                    task.id, tasks[first].func
                ),
            ));
        } else {
            index.insert(&task.id, i);
        }
    }

    for task in tasks {
        for (dep, span) in &task.dependencies {
            if dep == &task.id {
                push(syn::Error::new(
                    *span,
                    format!("task '{}' depends on itself", task.id),
                ));
            } else if !index.contains_key(dep.as_str()) && !rejected.contains(dep) {
                let known: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
                push(syn::Error::new(
                    *span,
                    format!(
                        "task '{}' depends on unknown task '{dep}' (workflow '{name}' has: {})",
                        task.id,
                        known.join(", ")
                    ),
                ));
            }
        }
        if let Some(trigger) = &task.trigger {
            for (referenced, span) in trigger.task_refs() {
                if !task.dependencies.iter().any(|(d, _)| d == referenced) {
                    push(syn::Error::new(
                        *span,
                        format!(
                            "the trigger rule of task '{}' names '{referenced}', which is not one of its dependencies",
                            task.id
                        ),
                    ));
                }
            }
        }
    }

    if let Some(cycle) = find_cycle(tasks, &index) {
        // Point at the dependency literal that closes the cycle.
        let last = cycle[cycle.len() - 2];
        let closing = &cycle[cycle.len() - 1];
        let span = tasks[last]
            .dependencies
            .iter()
            .find(|(d, _)| d == &tasks[*closing].id)
            .map(|(_, s)| *s)
            .unwrap_or(tasks[last].id_span);
        let path: Vec<&str> = cycle.iter().map(|&i| tasks[i].id.as_str()).collect();
        push(syn::Error::new(
            span,
            format!(
                "dependency cycle in workflow '{name}': {}",
                path.join(" -> ")
            ),
        ));
    }

    match errors {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A cycle as a path of task indices whose first and last are the same,
/// following "depends on" edges.
fn find_cycle(tasks: &[TaskDef], index: &HashMap<&str, usize>) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        node: usize,
        tasks: &[TaskDef],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[node] = Mark::Active;
        stack.push(node);
        for (dep, _) in &tasks[node].dependencies {
            let Some(&next) = index.get(dep.as_str()) else {
                continue;
            };
            if next == node {
                continue; // reported as self-dependency
            }
            match marks[next] {
                Mark::Active => {
                    let start = stack.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, tasks, index, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
        None
    }

    let mut marks = vec![Mark::New; tasks.len()];
    for start in 0..tasks.len() {
        if marks[start] == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(start, tasks, index, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}
