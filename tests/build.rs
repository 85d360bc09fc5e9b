//! Builds the guest components the integration tests run: the examples and
//! the fixtures under `tests/guests/`, for `wasm32-wasip2`, and writes
//! `OUT_DIR/gen.rs` with one `pub const NAME: &str = "<path>"` per component.
//!
//! The nested cargo gets its own target directory under `OUT_DIR` (sharing
//! the outer one would deadlock on its lock) and no inherited rustflags.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest packages built once each.
const GUESTS: &[&str] = &[
    "hello",
    "etl",
    "flaky",
    "sandbox-probe",
    "liar",
    "shapes",
    "capable",
    "contract-v01",
    "fetch",
    // Package `egress`; its component and constant follow the crate's
    // name: egress_guest.wasm, EGRESS_GUEST.
    "egress-guest",
];

/// Features of the `liar` fixture: one component per feature.
const LIAR_FEATURES: &[&str] = &[
    "cycle",
    "unknown_dep",
    "duplicate_id",
    "empty_name",
    "many_tasks",
    "huge_name",
    "control_chars",
    "odd_unicode_name",
    "describe_loops",
    "describe_panics",
    "describe_oom",
    "wrong_contract_version",
    "schedule_unknown_workflow",
    "schedule_bad_cron",
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("workspace root").to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.join("guest-target");
    for path in [
        "examples",
        "tests/guests",
        "plugin-sdk",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let mut consts = String::new();
    let mut args: Vec<&str> = Vec::new();
    for g in GUESTS {
        args.extend(["-p", g]);
    }
    cargo_build(&root, &target_dir, &args);
    let wasm_dir = target_dir.join("wasm32-wasip2").join("guest");
    for g in GUESTS {
        let file = wasm_dir.join(format!("{}.wasm", g.replace('-', "_")));
        let copy = out.join(format!("{}.wasm", g.replace('-', "_")));
        std::fs::copy(&file, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
        writeln!(
            consts,
            "pub const {}: &str = {:?};",
            const_name(g),
            copy.display().to_string()
        )
        .unwrap();
    }
    for feature in LIAR_FEATURES {
        cargo_build(&root, &target_dir, &["-p", "liar", "--features", feature]);
        let copy = out.join(format!("liar_{feature}.wasm"));
        std::fs::copy(wasm_dir.join("liar.wasm"), &copy).expect("copy liar variant");
        writeln!(
            consts,
            "pub const LIAR_{}: &str = {:?};",
            feature.to_uppercase(),
            copy.display().to_string()
        )
        .unwrap();
    }
    cargo_build(
        &root,
        &target_dir,
        &["-p", "sandbox-probe", "--features", "v2"],
    );
    let copy = out.join("sandbox_probe_v2.wasm");
    std::fs::copy(wasm_dir.join("sandbox_probe.wasm"), &copy).expect("copy probe v2");
    writeln!(
        consts,
        "pub const SANDBOX_PROBE_V2: &str = {:?};",
        copy.display().to_string()
    )
    .unwrap();
    cargo_build(&root, &target_dir, &["-p", "shapes", "--features", "long"]);
    let copy = out.join("shapes_long.wasm");
    std::fs::copy(wasm_dir.join("shapes.wasm"), &copy).expect("copy shapes long");
    writeln!(
        consts,
        "pub const SHAPES_LONG: &str = {:?};",
        copy.display().to_string()
    )
    .unwrap();
    for (name, tables) in [
        // One table far over the element cap.
        ("TABLE_BOMB_ONE", "(table 10000000 funcref)".to_string()),
        // Many tables, each under the cap, together over it.
        ("TABLE_BOMB_MANY", "(table 25000 funcref)".repeat(8)),
    ] {
        let bytes = table_bomb(&root, &tables).expect("build a table-bomb fixture");
        let path = out.join(format!("{}.wasm", name.to_lowercase()));
        std::fs::write(&path, bytes).expect("write a table-bomb fixture");
        writeln!(
            consts,
            "pub const {name}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out.join("gen.rs"), consts).expect("write gen.rs");
}

/// A component of the contract's world whose core module declares `tables`:
/// it type-checks as a package, and its instantiation asks for more table
/// elements than the sandbox allows. Its functions are never reached.
fn table_bomb(root: &Path, tables: &str) -> anyhow::Result<Vec<u8>> {
    let wat = format!(
        r#"(module
            (memory (export "memory") 1)
            {tables}
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)
            (func (export "culvert:plugin/metadata@0.1.0#describe") (result i32) unreachable)
            (func (export "culvert:plugin/task@0.1.0#run")
                (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32) unreachable))"#
    );
    let mut module = wat::parse_str(&wat)?;
    let mut resolve = wit_parser::Resolve::default();
    // The frozen 0.1 world: these fixtures are also 0.1 components.
    let (package, _) = resolve.push_dir(root.join("wit").join("0.1"))?;
    let world = resolve.select_world(&[package], Some("plugin"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
}

fn const_name(guest: &str) -> String {
    guest.replace('-', "_").to_uppercase()
}

fn cargo_build(root: &Path, target_dir: &Path, args: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        // Under `cargo clippy`, the outer cargo wraps rustc with clippy; the
        // guests are linted separately (see .ci/run).
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .status()
        .expect("run cargo for the guest components");
    if !status.success() {
        panic!(
            "building the guest components failed ({status}). If the wasm target is missing, run:\n    rustup target add wasm32-wasip2"
        );
    }
}
