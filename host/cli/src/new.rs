//! `culvert new NAME`: scaffold a package crate outside this repository: a
//! sample workflow with a trigger rule and a retry policy, its native unit
//! tests (`culvert_sdk::testing`), and the build settings that make plain
//! `cargo build --release` produce the component. The files are the
//! templates under `host/cli/templates/`.

use crate::args::NewArgs;
use anyhow::{Context as _, bail};
use serde_json::json;
use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("../templates/config.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/lib.rs.tmpl");
const GITIGNORE: &str = include_str!("../templates/gitignore.tmpl");

/// The command that builds the package, run in its directory.
const BUILD: &str = "cargo build --release";
/// The command that runs its unit tests natively (an alias that
/// `.cargo/config.toml` defines: `cargo test --target host-tuple`).
const TEST: &str = "cargo test-native";

pub(crate) fn new_package(args: NewArgs) -> anyhow::Result<i32> {
    check_name(&args.name)?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = sdk_dependency(&args)?;
    prepare_dir(&dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let crate_name = args.name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk_dependency}}", &sdk.toml)
    };
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&dir.join(".cargo/config.toml"), &fill(CARGO_CONFIG))?;
    write(&dir.join("src/lib.rs"), &fill(LIB_RS))?;
    write(&dir.join(".gitignore"), &fill(GITIGNORE))?;

    let package = target_dir(&dir)
        .join("wasm32-wasip2/release")
        .join(format!("{crate_name}.wasm"));
    if args.json {
        let out = json!({
            "path": dir,
            "package": package,
            "build": BUILD,
            "test": TEST,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("created package {} in {}", args.name, dir.display());
    println!("  SDK: {}", sdk.describe);
    println!();
    println!("  cd {}", dir.display());
    println!("  {BUILD:<24} # the package: {}", package.display());
    println!("  {TEST:<24} # its unit tests, natively (cargo test --target host-tuple)");
    println!("  culvert package inspect {}", package.display());
    println!(
        "  culvert exec {} --workflow {} --context '{{\"report\": true}}'",
        package.display(),
        args.name
    );
    println!();
    println!("The wasm target, once: rustup target add wasm32-wasip2");
    Ok(0)
}

/// A package name that is also a valid Cargo package, Culvert package and
/// workflow name: an ASCII letter, then up to 63 of `[A-Za-z0-9_-]`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        bail!(
            "invalid package name '{}': use an ASCII letter, then up to 63 of [A-Za-z0-9_-]",
            name.escape_debug()
        );
    }
    Ok(())
}

/// The `culvert-sdk` line of the new `Cargo.toml`, and how to say it.
struct SdkDependency {
    toml: String,
    describe: String,
}

fn sdk_dependency(args: &NewArgs) -> anyhow::Result<SdkDependency> {
    if let Some(path) = &args.sdk_path {
        let manifest = path.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).with_context(|| {
            format!(
                "--sdk-path {}: cannot read {}; give the plugin-sdk directory of a Culvert checkout",
                path.display(),
                manifest.display()
            )
        })?;
        if !text.lines().any(|l| l.trim() == "name = \"culvert-sdk\"") {
            bail!(
                "--sdk-path {}: {} is not the culvert-sdk crate; give the plugin-sdk directory of a Culvert checkout",
                path.display(),
                manifest.display()
            );
        }
        let path = path
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let text = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        return Ok(SdkDependency {
            toml: format!("culvert-sdk = {{ path = {} }}", toml_string(text)),
            describe: format!("culvert-sdk from {}", path.display()),
        });
    }
    let (version, chosen) = match &args.sdk_version {
        Some(v) => (v.as_str(), true),
        None => (env!("CARGO_PKG_VERSION"), false),
    };
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-^~=<>*, ".contains(c))
    {
        bail!(
            "invalid --sdk-version '{}': give a version requirement such as 0.1",
            version.escape_debug()
        );
    }
    let mut toml = format!("culvert-sdk = {}", toml_string(version));
    if !chosen {
        toml = format!(
            "# culvert-sdk from crates.io, at this culvert's version. To build against a\n\
             # checkout of the Culvert repository instead, use its plugin-sdk directory:\n\
             # culvert-sdk = {{ path = \"/path/to/culvert/plugin-sdk\" }}\n{toml}"
        );
    }
    Ok(SdkDependency {
        toml,
        describe: format!(
            "culvert-sdk {version} from crates.io{}",
            if chosen {
                ""
            } else {
                " (--sdk-path DIR uses a checkout instead)"
            }
        ),
    })
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Create `dir`, or accept it empty; never write into a directory that has
/// anything in it.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; refusing to overwrite it (choose another NAME or --path)",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        }
        Err(e) if dir.exists() && !dir.is_dir() => {
            Err(e).with_context(|| format!("{} exists and is not a directory", dir.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Where `cargo build` in `dir` will write: `$CARGO_TARGET_DIR` if set (a
/// relative one is relative to `dir`, where the build runs), else
/// `dir/target`.
fn target_dir(dir: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(t) => dir.join(t),
        None => dir.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cargo_and_culvert_names() {
        for good in ["demo", "demo-pkg", "a_1", &"a".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1demo",
            "-demo",
            "de mo",
            "demo.pkg",
            "démo",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), r#""a\u000Ab""#);
    }

    #[test]
    fn every_template_placeholder_is_known() {
        for t in [CARGO_TOML, CARGO_CONFIG, LIB_RS, GITIGNORE] {
            let filled = t
                .replace("{{name}}", "n")
                .replace("{{crate}}", "n")
                .replace("{{sdk_dependency}}", "d");
            assert!(!filled.contains("{{"), "{filled}");
        }
    }
}
