//! The host side of the WIT contract: the one `bindgen!` of the crate.
//!
//! It points at the repository's root `wit/` folder, the same files the SDK's
//! `wit_bindgen::generate!` reads, so host and guests cannot drift apart.
//! Everything else in the crate uses the types generated here through
//! [`crate::metadata`], which converts them into plain, serializable Rust.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "culvert:plugin/plugin",
    path: "../wit",
    imports: { default: trappable },
    exports: { default: async },
});

/// The contract version this host speaks: the version of the WIT package.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The WIT package name, without version.
pub const CONTRACT_PACKAGE: &str = "culvert:plugin";

pub use self::culvert::plugin::types;

#[cfg(test)]
mod tests {
    /// The version in `wit/culvert.wit` is the one the host checks against.
    #[test]
    fn the_wit_package_version_is_the_contract_version() {
        let wit = include_str!("../../wit/culvert.wit");
        let line = format!(
            "package {}@{};",
            super::CONTRACT_PACKAGE,
            super::CONTRACT_VERSION
        );
        assert!(
            wit.contains(&line),
            "wit/culvert.wit does not declare {line}"
        );
    }
}
