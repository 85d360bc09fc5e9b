//! The library's imports run one way, down the pipeline.
//!
//! Reads the crate's own source: every `crate::GROUP` a module names must
//! be a stage below its own (the order is `STAGES`), and inside a stage the
//! modules that name each other through `super::` must form no cycle. Test
//! modules (`#[cfg(test)]` and what follows) and comments are not read.
//! docs/ARCHITECTURE.md ("Which way imports run") describes the same rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The stages, bottom first. A module may import from stages before its
/// own, never from one after it.
const STAGES: &[&[&str]] = &[
    &[
        "files",
        "guest_text",
        "signing",
        "suggest",
        "telemetry",
        "test_support",
    ],
    &["contract"],
    &["egress"],
    &["sandbox"],
    &["cron"],
    &["package"],
    &["tenants", "access"],
    &["scheduler"],
    &["store"],
    &["registry"],
    &["executor", "start_queue", "firing"],
    &["runner"],
];

fn rank(group: &str) -> Option<usize> {
    STAGES.iter().position(|s| s.contains(&group))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The identifiers that follow each `prefix` in `code`.
fn names_after<'a>(code: &'a str, prefix: &str) -> BTreeSet<&'a str> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn imports_run_down_the_pipeline_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut problems = Vec::new();
    // Within each stage folder: module -> the sibling modules it names.
    let mut siblings: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts == ["lib"] {
            continue;
        }
        let group = parts[0].clone();
        let Some(own) = rank(&group) else {
            problems.push(format!(
                "{}: stage '{group}' is not in STAGES",
                rel.display()
            ));
            continue;
        };
        let text = code(&std::fs::read_to_string(file).unwrap());
        for other in names_after(&text, "crate::") {
            if other == group {
                if parts.len() > 1 {
                    problems.push(format!(
                        "{}: names its own stage as crate::{other}; use super::",
                        rel.display()
                    ));
                }
                continue;
            }
            match rank(other) {
                Some(r) if r < own => {}
                Some(_) => problems.push(format!(
                    "{}: stage '{group}' imports from crate::{other}, which is not below it",
                    rel.display()
                )),
                None => problems.push(format!(
                    "{}: names crate::{other}, which is not a stage",
                    rel.display()
                )),
            }
        }
        if parts.len() == 2 && parts[1] != "mod" {
            let deps = names_after(&text, "super::")
                .into_iter()
                .map(str::to_string)
                .collect();
            siblings
                .entry(group)
                .or_default()
                .insert(parts[1].clone(), deps);
        }
    }
    for (group, graph) in &siblings {
        // Depth-first search for a cycle among the stage's modules.
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut cycle = path[i..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_string());
            for d in graph.get(m).into_iter().flatten() {
                if graph.contains_key(d)
                    && let Some(c) = visit(d, graph, path, done)
                {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            if let Some(cycle) = visit(m, graph, &mut Vec::new(), &mut done) {
                problems.push(format!("{group}: import cycle {}", cycle.join(" -> ")));
                break;
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_and_an_upward_import() {
    let text = code(
        "use crate::store::Store;\n// crate::runner in a comment\nfn f() { super::b::g() }\n#[cfg(test)]\nuse crate::runner;\n",
    );
    assert_eq!(names_after(&text, "crate::"), BTreeSet::from(["store"]));
    assert_eq!(names_after(&text, "super::"), BTreeSet::from(["b"]));
    assert!(rank("store") > rank("package"));
}
