//! `culvert package build [DIR] --out FILE.wasm`: one command for a package
//! in any language the SDKs speak. It detects the language from the
//! project's files and runs that toolchain against the contract:
//!
//! | found | language | toolchain |
//! |---|---|---|
//! | `Cargo.toml` | Rust | `cargo build --release --target wasm32-wasip2` |
//! | `pyproject.toml` | Python | componentize-py (pinned [`COMPONENTIZE_PY`]), from `DIR/.venv`, the active `VIRTUAL_ENV`, or `PATH` |
//! | `package.json` | JavaScript | esbuild and componentize-js (pinned [`COMPONENTIZE_JS`]) from `DIR/node_modules`, with node |
//!
//! It downloads nothing: a missing toolchain is named with the command that
//! installs it (pip from PyPI into the project's own `.venv`; npm into its
//! `node_modules`). Then it prints what `package inspect` prints.

use crate::args::{Format, GlobalArgs};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The componentize-py the Python SDK is built and tested with.
pub(crate) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// The componentize-js the JavaScript SDK is built and tested with.
pub(crate) const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// Written into the project's `node_modules` and run with node.
const JS_BUILD: &str = include_str!("../templates/js_build.mjs");

/// The contract the guests are built against (the one this host speaks).
const WIT: &str = include_str!("../../../wit/culvert.wit");

/// Written into the build directory and run with the package's Python.
const PYTHON_ENTRY: &str = include_str!("../templates/python_entry.py");

/// A project's language, from the files in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Rust,
    Python,
    JavaScript,
}

fn detect(dir: &Path) -> anyhow::Result<Language> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Language::Rust)
    } else if dir.join("pyproject.toml").is_file() {
        Ok(Language::Python)
    } else if dir.join("package.json").is_file() {
        Ok(Language::JavaScript)
    } else {
        bail!(
            "{} holds no package project: expected Cargo.toml (Rust), pyproject.toml (Python) or package.json (JavaScript)",
            dir.display()
        )
    }
}

/// A fresh directory for generated files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("culvert-build-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) async fn package_build(
    g: &GlobalArgs,
    dir: &Path,
    out: Option<&Path>,
    wit: Option<&Path>,
    format: Format,
) -> anyhow::Result<i32> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot open the project directory {}", dir.display()))?;
    let language = detect(&dir)?;
    let wit = match wit {
        None => WIT.to_string(),
        Some(_) if language == Language::Rust => {
            bail!("--wit applies to Python projects: a Rust package's SDK carries its contract")
        }
        Some(_) if language == Language::JavaScript => {
            bail!(
                "--wit applies to Python projects: the JavaScript SDK imports the host interface of contract 0.2.0"
            )
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the contract {}", path.display()))?,
    };
    let built = match language {
        Language::Rust => build_rust(&dir)?,
        Language::Python => build_python(&dir, out, &wit)?,
        Language::JavaScript => build_js(&dir, out, &wit)?,
    };
    let file = match out {
        Some(out) if std::path::absolute(out)? != std::path::absolute(&built)? => {
            std::fs::copy(&built, out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            out.to_path_buf()
        }
        _ => built,
    };
    eprintln!("built {}", file.display());
    crate::package::inspect(g, &file, format).await
}

/// Run `command`, its output going to stderr (stdout stays the summary's).
fn run(mut command: Command, what: &str) -> anyhow::Result<std::process::Output> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        // What it printed is part of why: to stderr, with the rest.
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(&output.stdout);
    }
    Ok(output)
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--message-format=json-render-diagnostics",
        "--manifest-path",
    ])
    .arg(dir.join("Cargo.toml"))
    // The project's own .cargo/config.toml and rust-toolchain.toml apply.
    .current_dir(dir);
    let output = run(c, "cargo (install Rust with rustup: https://rustup.rs)")?;
    if !output.status.success() {
        bail!(
            "cargo build failed (above); if the target is missing: rustup target add wasm32-wasip2"
        );
    }
    // The last .wasm artifact cargo reports is the package's component.
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .flat_map(|v| {
            v["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cargo built no .wasm file: the crate must be a cdylib (crate-type = [\"cdylib\"]) using culvert-sdk"
            )
        })
}

/// componentize-py and the Python next to it: `DIR/.venv`, the active
/// virtual environment, or `PATH`.
fn python_toolchain(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, Option<PathBuf>)> {
    let mut venvs = vec![dir.join(".venv")];
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(v));
    }
    for venv in venvs {
        let tool = venv.join("bin/componentize-py");
        if tool.is_file() {
            return Ok((tool, venv.join("bin/python"), Some(venv)));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let tool = d.join("componentize-py");
            if tool.is_file() {
                return Ok((tool, PathBuf::from("python3"), None));
            }
        }
    }
    bail!(
        "componentize-py is not installed for {}: install it and the SDK into the project's own environment:\n  python3 -m venv {0}/.venv\n  {0}/.venv/bin/pip install '{COMPONENTIZE_PY}' PATH/TO/culvert/plugin-sdk/python",
        dir.display()
    )
}

fn build_python(dir: &Path, out: Option<&Path>, contract: &str) -> anyhow::Result<PathBuf> {
    let (tool, python, venv) = python_toolchain(dir)?;
    let scratch = Scratch::new()?;
    let wit = scratch.0.join("wit");
    let gen_dir = scratch.0.join("gen");
    std::fs::create_dir_all(&wit)?;
    std::fs::create_dir_all(&gen_dir)?;
    std::fs::write(wit.join("culvert.wit"), contract)?;
    let entry = scratch.0.join("python_entry.py");
    std::fs::write(&entry, PYTHON_ENTRY)?;

    // The package imported natively first: a definition the host would
    // refuse stops here, with the SDK's message.
    let mut c = Command::new(&python);
    c.arg(&entry).arg(dir).arg(&gen_dir);
    let output = run(c, &format!("{}", python.display()))?;
    if !output.status.success() {
        bail!("the package's definitions are refused (above)");
    }
    let facts: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the entry generator printed no summary")?;
    let name = facts["name"].as_str().unwrap_or("package");
    let file = match out {
        Some(o) => o.to_path_buf(),
        None => dir.join(format!("{name}.wasm")),
    };

    let mut c = Command::new(&tool);
    c.arg("-d")
        .arg(&wit)
        .args(["-w", "plugin", "componentize", "culvert_entry", "-p"])
        .arg(&gen_dir)
        .arg("-p")
        .arg(dir)
        .arg("-o")
        .arg(&file);
    if let Some(venv) = venv {
        c.env("VIRTUAL_ENV", venv);
    }
    let output = run(c, &format!("{}", tool.display()))?;
    if !output.status.success() {
        bail!("componentize-py failed (above)");
    }
    Ok(file)
}

fn build_js(dir: &Path, out: Option<&Path>, contract: &str) -> anyhow::Result<PathBuf> {
    let modules = dir.join("node_modules");
    for needed in [
        "@bytecodealliance/componentize-js",
        "esbuild",
        "@culvert/sdk",
    ] {
        if !modules.join(needed).exists() {
            bail!(
                "{needed} is not installed in {}: list it in package.json (devDependencies '{COMPONENTIZE_JS}' and esbuild; dependency @culvert/sdk from PATH/TO/culvert/plugin-sdk/js) and run `npm install` there",
                modules.display()
            );
        }
    }
    let scratch = Scratch::new()?;
    let wit = scratch.0.join("culvert.wit");
    std::fs::write(&wit, contract)?;
    // In the project's node_modules, so that the script's imports resolve
    // to the project's own installs.
    let script_dir = modules.join(".culvert-build");
    std::fs::create_dir_all(&script_dir)?;
    // One file per build: builds that share node_modules never read one
    // another's half-written script.
    let script = script_dir.join(format!(
        "build-{}.mjs",
        scratch
            .0
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
    ));
    std::fs::write(&script, JS_BUILD)?;
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&script);
    let file = match out {
        Some(o) => o.to_path_buf(),
        None => {
            let name = std::fs::read(dir.join("package.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["name"].as_str().map(|n| n.replace('/', "-")))
                .unwrap_or_else(|| "package".into());
            dir.join(format!("{name}.wasm"))
        }
    };
    let file = std::path::absolute(&file)?;
    let mut c = Command::new("node");
    c.arg(&script)
        .arg(dir)
        .arg(&wit)
        .arg(scratch.0.join("bundle.js"))
        .arg(&file)
        .current_dir(dir);
    let output = run(c, "node (install Node.js 20 or later)")?;
    if !output.status.success() {
        bail!("the JavaScript build failed (above)");
    }
    Ok(file)
}
