//! A workflow's DAG as SVG, laid out by dependency level: a task's column
//! is the length of the longest path from a root to it, so every edge runs
//! left to right. Each node is coloured by its task's status (a CSS class)
//! and may link to the task's page.
//!
//! Every text in it comes from a package and is escaped by the template;
//! a DAG of more than [`MAX_DRAWN`] tasks is not drawn (the page's table
//! still lists them), so a page stays a bounded size.

use culvert::WorkflowMeta;
use maud::{Markup, html};
use std::collections::HashMap;

/// The most tasks drawn.
pub const MAX_DRAWN: usize = 400;

const NODE_W: usize = 150;
const NODE_H: usize = 34;
const GAP_X: usize = 48;
const GAP_Y: usize = 14;
const PAD: usize = 8;
/// Characters of a task id shown in its node (the whole id is its title).
const LABEL_CHARS: usize = 18;

/// Where each task goes: `(column, row)`.
fn layout(wf: &WorkflowMeta) -> HashMap<&str, (usize, usize)> {
    let mut level: HashMap<&str, usize> = HashMap::new();
    for id in wf.topological_order() {
        let task = wf.tasks.iter().find(|t| t.id == id);
        let l = task
            .map(|t| {
                t.dependencies
                    .iter()
                    .filter_map(|d| level.get(d.as_str()))
                    .map(|l| l + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        level.insert(id, l);
    }
    let mut rows: HashMap<usize, usize> = HashMap::new();
    let mut at = HashMap::new();
    for id in wf.topological_order() {
        let col = level[id];
        let row = rows.entry(col).or_insert(0);
        at.insert(id, (col, *row));
        *row += 1;
    }
    at
}

/// The top-left corner of the node at `(col, row)`.
fn corner((col, row): (usize, usize)) -> (usize, usize) {
    (PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
}

/// `id`, cut to [`LABEL_CHARS`] characters.
fn label(id: &str) -> String {
    if id.chars().count() <= LABEL_CHARS {
        id.to_string()
    } else {
        let cut: String = id.chars().take(LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// The DAG of `wf`: `status(task)` gives a node's status (its class and
/// what its title says), `link(task)` where the node leads.
pub fn svg(
    wf: &WorkflowMeta,
    status: impl Fn(&str) -> Option<String>,
    link: impl Fn(&str) -> Option<String>,
) -> Markup {
    if wf.tasks.len() > MAX_DRAWN {
        return html! {
            p.note { "This workflow has " (wf.tasks.len()) " tasks: too many to draw (at most "
                (MAX_DRAWN) "). The table lists them." }
        };
    }
    let at = layout(wf);
    let cols = at.values().map(|(c, _)| c + 1).max().unwrap_or(1);
    let rows = at.values().map(|(_, r)| r + 1).max().unwrap_or(1);
    let width = 2 * PAD + cols * NODE_W + (cols - 1) * GAP_X;
    let height = 2 * PAD + rows * NODE_H + (rows - 1) * GAP_Y;
    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" role="img"
            aria-label={ "DAG of workflow " (wf.name) ", " (wf.tasks.len()) " tasks" }
            width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
            @for t in &wf.tasks {
                @for d in &t.dependencies {
                    @if let (Some(from), Some(to)) = (at.get(d.as_str()), at.get(t.id.as_str())) {
                        @let (x1, y1) = corner(*from);
                        @let (x2, y2) = corner(*to);
                        path.edge d={ "M" (x1 + NODE_W) " " (y1 + NODE_H / 2) " C" (x1 + NODE_W + GAP_X / 2) " " (y1 + NODE_H / 2) " " (x2 - GAP_X / 2) " " (y2 + NODE_H / 2) " " (x2) " " (y2 + NODE_H / 2) } {}
                    }
                }
            }
            @for t in &wf.tasks {
                @if let Some(pos) = at.get(t.id.as_str()) {
                    @let (x, y) = corner(*pos);
                    @let s = status(&t.id);
                    @let class = format!("node s-{}", s.as_deref().unwrap_or("none"));
                    g class=(class) data-task=(t.id) data-status=[s.as_deref()] {
                        @match link(&t.id) {
                            Some(href) => {
                                a href=(href) {
                                    (node(&t.id, s.as_deref(), x, y))
                                }
                            }
                            None => { (node(&t.id, s.as_deref(), x, y)) }
                        }
                    }
                }
            }
        }
    }
}

/// One node's box, label and title.
fn node(id: &str, status: Option<&str>, x: usize, y: usize) -> Markup {
    html! {
        title { (id) @if let Some(s) = status { ": " (s) } }
        rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6" {}
        text x=(x + 10) y=(y + NODE_H / 2 + 5) { (label(id)) }
    }
}
