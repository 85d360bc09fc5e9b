//! `culvert new` for real: scaffold a package outside the repository, build
//! it with cargo for wasm32-wasip2, load and run it with the real binary,
//! and run the native tests it comes with.
//!
//! Slow the first time (the scaffold's own dependencies compile, in release
//! for wasm and in debug natively), so it is one test. Its builds share
//! `<target>/scratch` (next to `CARGO_TARGET_TMPDIR`), which later runs
//! reuse; the workspace's own target directory is locked by the `cargo
//! test` running this. The scaffold goes to the same place under the system
//! temporary directory each time (one per target directory), so that its
//! artifacts replace the previous run's instead of piling up.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_culvert");

/// The shared target directory of the scaffolded builds.
fn scratch_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
        .join("scratch")
}

/// Where the scaffold goes: outside the repository, the same directory on
/// every run with this target directory, emptied first.
fn scaffold_home() -> PathBuf {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    scratch_target().hash(&mut h);
    let home = std::env::temp_dir().join(format!("culvert-new-test-{:016x}", h.finish()));
    if home.exists() {
        std::fs::remove_dir_all(&home).unwrap();
    }
    std::fs::create_dir_all(&home).unwrap();
    home.canonicalize().unwrap()
}

/// What the `cargo test` running us sets that a cargo of the scaffold must
/// not inherit.
const OUTER_CARGO: [&str; 8] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "CARGO_MANIFEST_DIR",
];

/// A cargo for the scaffold, untouched by the `cargo test` running us.
fn cargo(dir: &Path) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(dir)
        .env("CARGO_TARGET_DIR", scratch_target())
        // crates.io need not be reachable: the scaffold's dependencies are
        // the workspace's, already in the local registry cache.
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TERM_COLOR", "never");
    for var in OUTER_CARGO {
        c.env_remove(var);
    }
    c
}

fn culvert(dir: &Path, home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env("CARGO_TARGET_DIR", scratch_target())
        .env("CULVERT_CACHE_DIR", home.join("cache"))
        .env("CULVERT_DATA_DIR", home.join("data"))
        .env("CULVERT_LOG", "warn");
    c
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Run one of the commands `culvert new` printed (`cargo ...`) in `dir`.
fn run_printed(command: &str, dir: &Path) -> String {
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("cargo"), "{command}");
    ok(command, cargo(dir).args(words).output().unwrap())
}

#[test]
fn new_scaffolds_a_package_that_builds_loads_runs_and_tests() {
    let work = scaffold_home();
    let culvert_home = tempfile::tempdir().unwrap();
    let home = culvert_home.path();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let sdk = repo.join("plugin-sdk");

    // Scaffold.
    let out = culvert(&work, home)
        .args(["new", "demo-pkg", "--json", "--sdk-path"])
        .arg(&sdk)
        .output()
        .unwrap();
    let printed: Value = serde_json::from_str(&ok("culvert new", out)).unwrap();
    let dir = work.join("demo-pkg");
    let package = scratch_target().join("wasm32-wasip2/release/demo_pkg.wasm");
    assert_eq!(printed["path"], dir.to_str().unwrap());
    assert_eq!(printed["package"], package.to_str().unwrap());
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let dependency = format!("culvert-sdk = {{ path = {:?} }}", sdk.to_str().unwrap());
    assert!(manifest.contains(&dependency), "{manifest}");
    let config = std::fs::read_to_string(dir.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("target = \"wasm32-wasip2\""), "{config}");

    // A second run refuses the now non-empty directory and changes nothing.
    let again = culvert(&work, home)
        .args(["new", "demo-pkg", "--sdk-path"])
        .arg(&sdk)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
        manifest
    );

    // Build the component with the printed command, where it said.
    let _ = std::fs::remove_file(&package);
    run_printed(printed["build"].as_str().unwrap(), &dir);
    let bytes = std::fs::read(&package).unwrap();
    assert!(
        bytes.starts_with(b"\0asm"),
        "not wasm: {}",
        package.display()
    );

    // `culvert package build` finds the crate's component on its own and
    // prints the inspect summary.
    let built = work.join("built.wasm");
    let mut build = culvert(&work, home);
    build
        .args(["package", "build", "--json", "--out"])
        .arg(&built)
        .arg(&dir)
        .env("CARGO_NET_OFFLINE", "true");
    for var in OUTER_CARGO {
        build.env_remove(var);
    }
    let summary: Value =
        serde_json::from_str(&ok("culvert package build", build.output().unwrap())).unwrap();
    assert_eq!(summary["name"], "demo-pkg");
    assert_eq!(std::fs::read(&built).unwrap(), bytes, "the same component");

    // The real loader accepts it: three tasks, the trigger rule, this SDK.
    let inspect = culvert(&work, home)
        .args(["package", "inspect", "--json"])
        .arg(&package)
        .output()
        .unwrap();
    let meta: Value = serde_json::from_str(&ok("culvert package inspect", inspect)).unwrap();
    assert_eq!(meta["name"], "demo-pkg");
    assert_eq!(meta["sdk_version"], env!("CARGO_PKG_VERSION"));
    let workflow = &meta["workflows"][0];
    assert_eq!(workflow["name"], "demo-pkg");
    let ids: Vec<&str> = workflow["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["split", "count", "report"]);
    assert!(!workflow["tasks"][2]["trigger"].is_null(), "{workflow}");

    // And runs it in the sandbox, trigger rule and all.
    let exec = culvert(&work, home)
        .arg("exec")
        .arg(&package)
        .args(["--workflow", "demo-pkg", "--json", "--context"])
        .arg(r#"{"text": "a b a", "report": true}"#)
        .output()
        .unwrap();
    let done: Value = serde_json::from_str(&ok("culvert exec", exec)).unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["context"]["summary"], "3 words, 2 distinct");

    // The template's own tests pass natively, with the printed command.
    let tests = run_printed(printed["test"].as_str().unwrap(), &dir);
    assert!(
        tests.contains("test result: ok. 2 passed"),
        "the template's tests did not run:\n{tests}"
    );
}
