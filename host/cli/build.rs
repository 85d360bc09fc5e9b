//! Feature unification only; this build script does nothing.
//!
//! `cargo test` builds `tests/build.rs`, whose build-dependencies turn on
//! `anyhow`'s default features for build-time (host) code. wasmtime's
//! `bindgen!` proc-macro links the host copy of `anyhow` (through
//! `wit-parser`), so without the same features here `cargo build -p
//! culvert-cli` (the demo) compiled another proc-macro and, above it,
//! another wasmtime. Declaring the same build-dependency makes both builds
//! share one.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
