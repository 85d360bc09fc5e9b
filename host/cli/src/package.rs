//! `culvert package`: inspect, add, list and remove packages.

use crate::args::*;
use crate::common::*;
use crate::table::print_table;
use anyhow::Context as _;
use culvert::{CacheSource, Escaped, LoadedPackage, PackageMetadata, Registered};
pub(crate) use culvert_server::views::{inspect_json, package_json};
use serde_json::Value;
use std::path::Path;

pub(crate) async fn inspect(
    global: &GlobalArgs,
    file: &Path,
    format: Format,
) -> anyhow::Result<i32> {
    let bytes = read_package(file)?;
    let loader = local_loader(global)?;
    let pkg = loader
        .load(&bytes)
        .await
        .with_context(|| format!("{} is not a valid package", file.display()))?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&inspect_json(&pkg, loader.engine()))?
        ),
        Format::Dot => print!("{}", to_dot(&pkg.metadata)),
        Format::Text => print!(
            "{}",
            inspect_text(
                &pkg,
                &culvert::imports_of(loader.engine(), &pkg.compiled.component)
            )
        ),
    }
    Ok(0)
}

pub(crate) fn describe_source(source: CacheSource) -> &'static str {
    match source {
        CacheSource::Memory => "cache hit (memory)",
        CacheSource::Disk => "cache hit (disk), no compile",
        CacheSource::Compiled => "compiled now (cache miss)",
    }
}

pub(crate) fn inspect_text(pkg: &LoadedPackage, imports: &[String]) -> String {
    use std::fmt::Write;
    let m = &pkg.metadata;
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", m.name, m.version);
    if !m.description.is_empty() {
        let _ = writeln!(out, "  {}", Escaped(&m.description));
    }
    let _ = writeln!(out, "content hash  {}", pkg.content_hash);
    let _ = writeln!(out, "size          {} bytes", pkg.size);
    let _ = writeln!(
        out,
        "contract      culvert:plugin@{} (sdk {})",
        m.contract_version,
        if m.sdk_version.is_empty() {
            "none"
        } else {
            &m.sdk_version
        }
    );
    if !m.author.is_empty() {
        let _ = writeln!(out, "author        {}", Escaped(&m.author));
    }
    let _ = writeln!(out, "compile       {}", describe_source(pkg.source));
    let _ = writeln!(out, "capabilities  {}", capabilities_text(m));
    let _ = writeln!(out, "imports       {}", imports.join(", "));
    for wf in &m.workflows {
        let _ = writeln!(out, "\nworkflow {} ({} tasks)", wf.name, wf.tasks.len());
        if !wf.description.is_empty() {
            let _ = writeln!(out, "  {}", Escaped(&wf.description));
        }
        for t in &wf.tasks {
            let _ = writeln!(out, "  task {}", t.id);
            if !t.description.is_empty() {
                // Guest text: escaped, so it stays on its line.
                let _ = writeln!(out, "    {}", Escaped(&t.description));
            }
            if !t.dependencies.is_empty() {
                let _ = writeln!(out, "    depends on  {}", t.dependencies.join(", "));
            }
            let _ = writeln!(out, "    retry       {}", t.retry);
            let _ = writeln!(
                out,
                "    timeout     {}",
                t.timeout_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "host default".into())
            );
            if let Some(rule) = &t.trigger {
                let _ = writeln!(out, "    trigger     {}", rule);
            }
        }
    }
    out
}

pub(crate) fn capabilities_text(m: &PackageMetadata) -> String {
    let c = &m.capabilities;
    if c.is_empty() {
        return "none requested".into();
    }
    let mut parts = Vec::new();
    if !c.env.is_empty() {
        parts.push(format!("env {}", c.env.join(",")));
    }
    for d in &c.dirs {
        parts.push(format!(
            "dir {} ({})",
            d.guest_path,
            if d.writable {
                "read-write"
            } else {
                "read-only"
            }
        ));
    }
    if !c.http_hosts.is_empty() {
        parts.push(format!("http {}", c.http_hosts.join(",")));
    }
    if c.wall_clock {
        parts.push("wall-clock".into());
    }
    if c.random {
        parts.push("random".into());
    }
    parts.join("; ")
}

/// Graphviz for every workflow of a package, one cluster each.
pub fn to_dot(m: &PackageMetadata) -> String {
    use std::fmt::Write;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", q(&m.label()));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, style=rounded];");
    for wf in &m.workflows {
        let _ = writeln!(out, "  subgraph {} {{", q(&format!("cluster_{}", wf.name)));
        let _ = writeln!(out, "    label={};", q(&wf.name));
        for t in &wf.tasks {
            let id = q(&format!("{}/{}", wf.name, t.id));
            let style = if t.trigger.is_some() {
                ", style=\"rounded,dashed\""
            } else {
                ""
            };
            let _ = writeln!(out, "    {id} [label={}{style}];", q(&t.id));
            for d in &t.dependencies {
                let _ = writeln!(out, "    {} -> {id};", q(&format!("{}/{}", wf.name, d)));
            }
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

pub(crate) async fn package_add(
    g: &GlobalArgs,
    file: &Path,
    tenant: &str,
    signature: Option<Vec<u8>>,
    json: bool,
) -> anyhow::Result<i32> {
    let bytes = read_package(file)?;
    let runner = open_runner(runner_config(g)?).await?;
    let r = runner
        .register_signed_package(tenant, &bytes, signature.as_deref())
        .await
        .with_context(|| format!("cannot register {}", file.display()))?;
    if r.created || r.signature_key_id.is_some() {
        runner
            .store()
            .record_audit(&crate::apikey::cli_entry(
                tenant,
                culvert::AuditAction::PackageAdded,
                &r.label(),
                serde_json::json!({
                    "content_hash": r.content_hash,
                    "size": bytes.len(),
                    "signature_key_id": r.signature_key_id,
                    "signed_at": r.signed_at,
                }),
            ))
            .await?;
    }
    print_registered(&r, json)
}

/// `package show NAME[@VERSION]`.
pub(crate) async fn package_show(
    g: &GlobalArgs,
    spec: &str,
    tenant: &str,
    json: bool,
) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    let (name, version) = split_name_version(spec);
    let rows = store.list_packages(Some(tenant)).await?;
    let row = rows
        .iter()
        .filter(|p| p.name == name && version.is_none_or(|v| p.version == v))
        .max_by_key(|p| p.registered_at)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "package '{}' not found in tenant '{tenant}'{}",
                culvert::escape_guest_text(spec),
                culvert::did_you_mean(name, rows.iter().map(|p| p.name.as_str()))
            )
        })?;
    print_package_detail(&culvert_server::views::package_detail_json(row), json)
}

/// The signature column of `package list`, and the line of `package show`:
/// the key id, marked when the key is untrusted (and the package
/// disabled).
fn signature_text(p: &Value) -> String {
    let s = &p["signature"];
    let Some(key) = s["key_id"].as_str() else {
        return "-".into();
    };
    match (s["key"].as_str(), s["disabled"].as_bool()) {
        (Some("untrusted"), Some(true)) => format!("{key} (UNTRUSTED, disabled)"),
        (Some("untrusted"), _) => format!("{key} (UNTRUSTED)"),
        _ => key.to_string(),
    }
}

/// Print one package in its detail JSON form
/// ([`culvert_server::views::package_detail_json`]), or as text.
pub(crate) fn print_package_detail(p: &Value, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(p)?);
        return Ok(0);
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!(
        "{} {} (tenant {})",
        text(&p["name"]),
        text(&p["version"]),
        text(&p["tenant"])
    );
    println!("  id            {}", text(&p["id"]));
    println!("  content hash  {}", text(&p["content_hash"]));
    println!("  size          {} bytes", p["size"]);
    println!("  registered    {}", text(&p["registered_at"]));
    if p["signature"].is_object() {
        println!(
            "  signed by     key {}, at {}",
            signature_text(p),
            text(&p["signature"]["signed_at"])
        );
        if let Some(at) = p["signature"]["key_untrusted_at"].as_str() {
            println!("  key untrusted {at}");
        }
    } else {
        println!("  signed by     nobody (no signature)");
    }
    for wf in p["metadata"]["workflows"].as_array().into_iter().flatten() {
        let tasks: Vec<String> = wf["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| text(&t["id"]))
            .collect();
        println!(
            "  workflow      {} ({})",
            text(&wf["name"]),
            tasks.join(", ")
        );
    }
    Ok(0)
}

/// Print what `package add` registered: one JSON object, or text.
pub(crate) fn print_registered(r: &Registered, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "{} {} (tenant {})",
            if r.created {
                "registered"
            } else {
                "already registered:"
            },
            r.label(),
            r.tenant
        );
        println!("  id            {}", r.id);
        println!("  content hash  {}", r.content_hash);
        if let Some(key) = &r.signature_key_id {
            println!("  signed by     key {key} (verified)");
        }
    }
    Ok(0)
}

pub(crate) async fn package_list(
    g: &GlobalArgs,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    let rows = store.list_packages(tenant).await?;
    let items: Vec<Value> = rows.iter().map(package_json).collect();
    print_package_list(&items, json)
}

/// Print packages in their JSON form ([`package_json`]): the array, or a
/// table.
pub(crate) fn print_package_list(items: &[Value], json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(0);
    }
    if items.is_empty() {
        println!("no packages registered");
        return Ok(0);
    }
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let table: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let hash = text(&p["content_hash"]);
            let workflows: Vec<&str> = p["workflows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            vec![
                text(&p["tenant"]),
                text(&p["name"]),
                text(&p["version"]),
                hash.get(..12).unwrap_or(&hash).to_string(),
                text(&p["id"]),
                signature_text(p),
                workflows.join(","),
            ]
        })
        .collect();
    print_table(
        &[
            "TENANT",
            "NAME",
            "VERSION",
            "HASH",
            "ID",
            "SIGNED BY",
            "WORKFLOWS",
        ],
        &table,
    );
    Ok(0)
}

pub(crate) async fn package_remove(
    g: &GlobalArgs,
    spec: &str,
    tenant: &str,
    json: bool,
) -> anyhow::Result<i32> {
    let (name, version) = split_name_version(spec);
    let runner = open_runner(runner_config(g)?).await?;
    let removed = runner.remove_package(tenant, name, version).await?;
    let items: Vec<Value> = removed.iter().map(package_json).collect();
    print_removed(&items, json)
}

/// Print the removed packages (their JSON form): the array, or a line
/// each.
pub(crate) fn print_removed(items: &[Value], json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        for p in items {
            println!(
                "removed {}@{} (tenant {}, id {})",
                text(&p["name"]),
                text(&p["version"]),
                text(&p["tenant"]),
                text(&p["id"])
            );
        }
    }
    Ok(0)
}
